// relay_floor: the cheapest proxy there can be, to measure what the kernel alone costs.
//
// It pairs every accepted connection with a connection of its own to the upstream and copies
// bytes both ways: no HTTP parsing, no routing, no headers, no allocation after the first use
// of a socket number. Against a keep-alive HTTP load it makes the same system calls as an
// HTTP/1.1 proxy (one receive and one send on each side per request), so its CPU per request is
// the floor that any user-space proxy over loopback TCP pays, with or without io_uring.
// bench/relay-floor.sh runs it beside nginx, HAProxy and edgeproxy. Not product code.
//
//   relay_floor epoll|uring PORT UPSTREAM_PORT      (both on 127.0.0.1)
//
// epoll: edge-triggered, one receive per readiness when it fills less than the buffer, as
//   tokio (and so edgeproxy) does.
// uring: io_uring with SINGLE_ISSUER and DEFER_TASKRUN (Linux 6.1+): a receive kept in flight on
//   every socket; its completion queues a send to the other side linked to the next receive,
//   and every queued operation goes to the kernel in the one call that waits for completions.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define BUF_SIZE 16384

static int other_side[MAX_FD];
static char *buffer[MAX_FD];
static int upstream_port;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

static void no_delay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  struct sockaddr_in a = loopback(port);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4096)) die("listen");
  return fd;
}

// Pairs a client with a fresh upstream connection (connect on loopback completes at once).
static int pair_with_upstream(int client) {
  int up = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = loopback(upstream_port);
  if (up < 0 || up >= MAX_FD || client >= MAX_FD) die("socket");
  if (connect(up, (struct sockaddr *)&a, sizeof a)) die("connect upstream");
  no_delay(client);
  no_delay(up);
  other_side[client] = up;
  other_side[up] = client;
  if (!buffer[client]) buffer[client] = malloc(BUF_SIZE);
  if (!buffer[up]) buffer[up] = malloc(BUF_SIZE);
  return up;
}

static void send_all(int fd, const char *p, ssize_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return;  // the other side is gone; its own receive sees it
    p += w;
    n -= w;
  }
}

static void run_epoll(int listener) {
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener}, ready[256];
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  for (;;) {
    int n = epoll_wait(ep, ready, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = ready[i].data.fd;
      if (fd == listener) {
        int client;
        while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          int up = pair_with_upstream(client);
          fcntl(up, F_SETFL, O_NONBLOCK);
          struct epoll_event c = {.events = EPOLLIN | EPOLLET, .data.fd = client};
          struct epoll_event u = {.events = EPOLLIN | EPOLLET, .data.fd = up};
          epoll_ctl(ep, EPOLL_CTL_ADD, client, &c);
          epoll_ctl(ep, EPOLL_CTL_ADD, up, &u);
        }
        continue;
      }
      for (;;) {
        ssize_t r = recv(fd, buffer[fd], BUF_SIZE, 0);
        if (r < 0 && errno == EAGAIN) break;
        if (r <= 0) {
          close(other_side[fd]);
          close(fd);
          break;
        }
        send_all(other_side[fd], buffer[fd], r);
        if (r < BUF_SIZE) break;  // a short read drained the socket
      }
    }
  }
}

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND };
static struct io_uring ring;

static struct io_uring_sqe *next_sqe(void) {
  struct io_uring_sqe *s = io_uring_get_sqe(&ring);
  if (!s) {
    io_uring_submit(&ring);
    s = io_uring_get_sqe(&ring);
  }
  return s;
}

static void tag(struct io_uring_sqe *s, int fd, enum op op) {
  io_uring_sqe_set_data64(s, (unsigned long long)fd | ((unsigned long long)op << 32));
}

static void queue_recv(int fd) {
  struct io_uring_sqe *s = next_sqe();
  io_uring_prep_recv(s, fd, buffer[fd], BUF_SIZE, 0);
  tag(s, fd, OP_RECV);
}

static void run_uring(int listener) {
  struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
  int e = io_uring_queue_init_params(4096, &ring, &p);
  if (e) {
    fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-e));
    exit(1);
  }
  struct io_uring_sqe *s = next_sqe();
  io_uring_prep_multishot_accept(s, listener, NULL, NULL, 0);
  tag(s, listener, OP_ACCEPT);
  for (;;) {
    io_uring_submit_and_wait(&ring, 1);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      seen++;
      int fd = (int)(cqe->user_data & 0xffffffff), res = cqe->res;
      switch ((enum op)(cqe->user_data >> 32)) {
        case OP_ACCEPT:
          if (res >= 0) {
            queue_recv(res);
            queue_recv(pair_with_upstream(res));
          }
          if (!(cqe->flags & IORING_CQE_F_MORE)) {
            fprintf(stderr, "multishot accept ended: %s\n", strerror(-res));
            exit(1);
          }
          break;
        case OP_RECV:
          if (res <= 0) {
            // The other side's receive is still in flight and holds its socket: shut that
            // socket down so that the receive ends, and close it when it does.
            int other = other_side[fd];
            other_side[fd] = -1;
            if (other >= 0) {
              other_side[other] = -1;
              shutdown(other, SHUT_RDWR);
            }
            close(fd);
            break;
          }
          s = next_sqe();
          io_uring_prep_send(s, other_side[fd], buffer[fd], res, MSG_NOSIGNAL);
          s->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;  // only a failed send posts
          tag(s, fd, OP_SEND);
          queue_recv(fd);
          break;
        case OP_SEND:
          break;  // failed: the linked receive is cancelled, and its completion closes the pair
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: relay_floor epoll|uring PORT UPSTREAM_PORT\n");
    return 2;
  }
  upstream_port = atoi(argv[3]);
  int listener = listen_on(atoi(argv[2]));
  if (!strcmp(argv[1], "epoll"))
    run_epoll(listener);
  else if (!strcmp(argv[1], "uring"))
    run_uring(listener);
  fprintf(stderr, "unknown mode %s\n", argv[1]);
  return 2;
}
