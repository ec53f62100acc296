//! The state database's disk fills up under a running hub: every change it cannot write is
//! refused with 507 and a message that says so, nothing it refused shows up (now or after a
//! restart), nothing it acknowledged is lost, reads keep working, and the hub takes writes
//! again once there is room.
//!
//! The disk is a small tmpfs the test mounts (the test command runs as root; a failed mount
//! fails the test, naming why), filled with a file until the kernel says ENOSPC.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use http::{Method, StatusCode};
use serde_json::json;
use support::*;

/// A tmpfs of `size` mounted at `at`, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill, which needs root (bash scripts/test.sh runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_owned())
    }

    /// Writes a file until the disk is full; returns it.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // Byte by byte, the last room too.
        while f.write_all(&[0]).is_ok() {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: the hub's files may still be open when a failing test unwinds.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn users_of(reply: &Reply) -> Vec<(String, bool)> {
    let mut users: Vec<(String, bool)> = reply
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap().to_owned(), u["admin"].as_bool().unwrap()))
        .collect();
    users.sort();
    users
}

/// `reply` is either what succeeded (`ok`) or the full disk's 507, which says so.
fn done_or_full(reply: &Reply, ok: StatusCode, what: &str) -> bool {
    if reply.status == ok {
        return true;
    }
    assert_eq!(
        reply.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{what}: {}",
        reply.text()
    );
    assert!(
        reply.text().contains("full"),
        "{what}: the answer says why: {}",
        reply.text()
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_changes_with_507_and_loses_nothing() {
    let dir = temp_dir("full-disk");
    let disk = SmallDisk::mount(&dir.join("disk"), "16m");
    let mut config = test_config(&disk.0);
    config.state.url = None; // the disk under test holds the SQLite state
    let hub = TestHub::start(config.clone()).await;
    let mut admin = hub.admin();
    for name in ["alice", "bob"] {
        assert_eq!(
            admin.api(Method::POST, &format!("/users/{name}"), None).await.status,
            StatusCode::CREATED
        );
    }
    let r = admin.api(Method::POST, "/users/alice/tokens", Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let (token, token_id) = (
        r.json()["token"].as_str().unwrap().to_owned(),
        r.json()["id"].as_str().unwrap().to_owned(),
    );

    let filler = disk.fill();
    // Writes may still fit in pages the database file already has; go on until one does not.
    let mut made = vec![("alice".to_owned(), false), ("bob".to_owned(), false)];
    let mut refused = None;
    for i in 0..2000 {
        let name = format!("user{i}");
        let r = admin.api(Method::POST, &format!("/users/{name}"), None).await;
        if done_or_full(&r, StatusCode::CREATED, &name) {
            made.push((name, false));
        } else {
            refused = Some(name);
            break;
        }
    }
    let refused = refused.expect("the full disk refused a new user within 2000");

    // Each change either happens or is refused as a whole, and the hub's answers say which.
    let r = admin
        .api(Method::PATCH, "/users/alice", Some(json!({"admin": true})))
        .await;
    let alice_admin = done_or_full(&r, StatusCode::OK, "alice made an admin");
    made[0].1 = alice_admin;
    let r = admin
        .api(Method::DELETE, &format!("/users/alice/tokens/{token_id}"), None)
        .await;
    let token_deleted = done_or_full(&r, StatusCode::NO_CONTENT, "alice's token deleted");
    let r = admin.api(Method::DELETE, "/users/bob", None).await;
    if done_or_full(&r, StatusCode::NO_CONTENT, "bob deleted") {
        made.retain(|(name, _)| name != "bob");
    }
    made.sort();

    // Reads keep working, and show exactly what was acknowledged.
    let r = admin.api(Method::GET, "/users", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(users_of(&r), made, "the running hub");
    assert!(!users_of(&r).iter().any(|(name, _)| *name == refused));
    let mut alice = hub.with_token(&token);
    let expected = if token_deleted {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    assert_eq!(
        alice.api(Method::GET, "/user", None).await.status,
        expected,
        "alice's token"
    );

    // Room again: writes are taken, and a restarted hub has what was acknowledged.
    std::fs::remove_file(filler).unwrap();
    let r = admin.api(Method::POST, &format!("/users/{refused}"), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    made.push((refused, false));
    made.sort();
    hub.stop().await;
    let hub = TestHub::start(config).await;
    let r = hub.admin().api(Method::GET, "/users", None).await;
    assert_eq!(users_of(&r), made, "after a restart");
    let mut alice = hub.with_token(&token);
    assert_eq!(
        alice.api(Method::GET, "/user", None).await.status,
        expected,
        "alice's token after a restart"
    );
    hub.stop().await;
}
