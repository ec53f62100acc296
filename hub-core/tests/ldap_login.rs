//! LDAP sign-in end to end, as a user sees it: the hub's real login form against a real
//! OpenLDAP slapd that each test starts (tests/support/slapd.rs, with its small directory of
//! alice, bob and carol). What is checked is what comes back: the status, the page's message,
//! the session cookie, `/hub/api/user`, and the `groups` claim of the session token (what the
//! edge's group policy reads).

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use config::LdapConfig;
use http::{Method, StatusCode};
use support::slapd::{self, GROUPS, PEOPLE, READER_DN, READER_PASSWORD, Slapd};
use support::*;

const BAD_CREDENTIALS: &str = "Invalid username or password";
const UNREACHABLE: &str = "Signing in is not possible right now: the directory cannot be reached";

/// Bind directly as `uid={username},ou=people,…`; groups read with the user's own binding.
fn bind_template(url: String) -> LdapConfig {
    LdapConfig {
        url,
        bind_dn_template: Some(format!("uid={{username}},{PEOPLE}")),
        group_search_base: Some(GROUPS.to_owned()),
        ..Default::default()
    }
}

/// Search for the user as the service account, then bind with the DN found.
fn search_then_bind(url: String) -> LdapConfig {
    LdapConfig {
        url,
        user_search_base: Some(PEOPLE.to_owned()),
        search_bind_dn: Some(READER_DN.to_owned()),
        search_bind_password: Some(READER_PASSWORD.to_owned()),
        group_search_base: Some(GROUPS.to_owned()),
        ..Default::default()
    }
}

async fn ldap_hub(name: &str, ldap: LdapConfig) -> TestHub {
    let mut config = test_config(&temp_dir(name));
    config.auth.authenticator = config::AuthenticatorKind::Ldap;
    config.auth.ldap = Some(ldap);
    config.validate().expect("a valid configuration");
    TestHub::start(config).await
}

/// Fills in and sends the login form, as a browser does.
async fn sign_in(hub: &TestHub, user: &str, password: &str) -> (Client, Reply) {
    let mut c = hub.client();
    let page = c.get("/hub/login").await;
    assert_eq!(page.status, StatusCode::OK, "login page");
    assert!(
        page.text().contains(r#"type="password""#),
        "the LDAP login form asks for a password"
    );
    let xsrf = c.cookies.get("_xsrf").cloned().expect("the login page sets _xsrf");
    let r = c
        .post_form(
            "/hub/login",
            &[("username", user), ("password", password), ("_xsrf", &xsrf)],
        )
        .await;
    (c, r)
}

/// Signs `user` in and checks it worked: a redirect and a session cookie.
async fn signed_in(hub: &TestHub, user: &str, password: &str) -> Client {
    let (c, r) = sign_in(hub, user, password).await;
    assert_eq!(r.status, StatusCode::FOUND, "sign-in of {user:?}: {}", r.text());
    assert!(
        c.cookies.contains_key("edgehub-token"),
        "sign-in of {user:?} sets the session cookie"
    );
    c
}

/// Signs in and checks it was refused with `status` and a page saying `message`, no session.
async fn refused(hub: &TestHub, user: &str, password: &str, status: StatusCode, message: &str) {
    let (c, r) = sign_in(hub, user, password).await;
    let page = r.text();
    assert_eq!(r.status, status, "sign-in of {user:?} with {password:?}: {page}");
    assert!(
        page.contains(message),
        "sign-in of {user:?} with {password:?}: wanted {message:?} in {page}"
    );
    assert!(
        !c.cookies.contains_key("edgehub-token"),
        "a refused sign-in of {user:?} sets no session"
    );
}

/// The claims of the session token in the client's cookie (its payload, not verified: the
/// hub's own tests check signatures).
fn claims(c: &Client) -> serde_json::Value {
    let token = c.cookies.get("edgehub-token").expect("a session cookie");
    let payload = token.split('.').nth(1).expect("a JWT");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&json).expect("JSON claims")
}

fn groups(c: &Client) -> Vec<String> {
    serde_json::from_value(claims(c)["groups"].clone()).unwrap_or_default()
}

/// `/hub/api/user` as the signed-in user: `(name, admin)`.
async fn me(c: &mut Client) -> (String, bool) {
    let r = c.api(Method::GET, "/user", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let user = r.json();
    (
        user["name"].as_str().unwrap_or_default().to_owned(),
        user["admin"].as_bool().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_template_signs_in_and_refuses_wrong_unknown_empty_and_injected_alike() {
    let directory = Slapd::start();
    let hub = ldap_hub("ldap-template", bind_template(directory.url())).await;

    let mut alice = signed_in(&hub, "alice", &slapd::password("alice")).await;
    assert_eq!(me(&mut alice).await, ("alice".to_owned(), false));
    // The user's own binding reads her groups; "Domain Users" is no hub name and is left out.
    assert_eq!(groups(&alice), ["proj-42", "staff"]);

    // The directory's spelling of the name is the hub user, not what was typed.
    let mut shouted = signed_in(&hub, "ALICE", &slapd::password("alice")).await;
    assert_eq!(me(&mut shouted).await.0, "alice");

    let alices = slapd::password("alice");
    for (user, password) in [
        ("alice", "wrong"),
        ("alice", &slapd::password("bob")),
        ("mallory", &alices[..]),
        // An empty password would be an unauthenticated bind, which this directory, like some
        // others, answers with success.
        ("alice", ""),
        ("", &alices[..]),
        ("*", &alices[..]),
        ("alice)(uid=*", &alices[..]),
        ("alice,ou=people", &alices[..]),
        ("alice+cn=alice", &alices[..]),
    ] {
        refused(&hub, user, password, StatusCode::FORBIDDEN, BAD_CREDENTIALS).await;
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_then_bind_finds_the_user_with_the_service_account() {
    let directory = Slapd::start();
    let hub = ldap_hub("ldap-search", search_then_bind(directory.url())).await;

    let mut bob = signed_in(&hub, "bob", &slapd::password("bob")).await;
    assert_eq!(me(&mut bob).await, ("bob".to_owned(), false));
    let mut alice = signed_in(&hub, "alice", &slapd::password("alice")).await;
    assert_eq!(me(&mut alice).await, ("alice".to_owned(), false));

    // Wildcards and filter syntax in the name match no one: `al*` with alice's password would
    // otherwise find alice alone and sign in as her; `alice)(uid=*` would break the filter.
    let alices = slapd::password("alice");
    for user in ["al*", "*", "alice)(uid=*", "*)(|(uid=*", "alice\\"] {
        refused(&hub, user, &alices, StatusCode::FORBIDDEN, BAD_CREDENTIALS).await;
    }
    refused(&hub, "alice", "wrong", StatusCode::FORBIDDEN, BAD_CREDENTIALS).await;
    refused(&hub, "nobody", &alices, StatusCode::FORBIDDEN, BAD_CREDENTIALS).await;
    refused(&hub, "alice", "", StatusCode::FORBIDDEN, BAD_CREDENTIALS).await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_groups_become_the_users_groups() {
    let directory = Slapd::start();
    let hub = ldap_hub("ldap-groups", search_then_bind(directory.url())).await;

    // groupOfNames `member`, and posixGroup `memberUid` (bob's `hpc`), by the default filter.
    let alice = signed_in(&hub, "alice", &slapd::password("alice")).await;
    assert_eq!(groups(&alice), ["proj-42", "staff"]);
    let bob = signed_in(&hub, "bob", &slapd::password("bob")).await;
    assert_eq!(groups(&bob), ["hpc", "staff"]);
    // carol's one group, "Domain Users", is not a valid hub name: dropped.
    let carol = signed_in(&hub, "carol", &slapd::password("carol")).await;
    assert_eq!(groups(&carol), Vec::<String>::new());
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_groups_refuse_carol_with_a_message_saying_why() {
    let directory = Slapd::start();
    let ldap = LdapConfig {
        allowed_groups: vec!["staff".into()],
        ..search_then_bind(directory.url())
    };
    let hub = ldap_hub("ldap-allowed", ldap).await;

    signed_in(&hub, "alice", &slapd::password("alice")).await;
    signed_in(&hub, "bob", &slapd::password("bob")).await;
    refused(
        &hub,
        "carol",
        &slapd::password("carol"),
        StatusCode::FORBIDDEN,
        "carol is not in a group allowed to sign in to this hub",
    )
    .await;
    // A wrong password is still just that, whatever the groups.
    refused(&hub, "carol", "wrong", StatusCode::FORBIDDEN, BAD_CREDENTIALS).await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_groups_make_alice_an_admin() {
    let directory = Slapd::start();
    let ldap = LdapConfig {
        admin_groups: vec!["proj-42".into()],
        ..bind_template(directory.url())
    };
    let hub = ldap_hub("ldap-admins", ldap).await;

    let mut alice = signed_in(&hub, "alice", &slapd::password("alice")).await;
    assert_eq!(me(&mut alice).await, ("alice".to_owned(), true));
    assert_eq!(claims(&alice)["admin"], true);
    let users = alice.api(Method::GET, "/users", None).await;
    assert_eq!(users.status, StatusCode::OK, "an admin lists users: {}", users.text());

    let mut bob = signed_in(&hub, "bob", &slapd::password("bob")).await;
    assert_eq!(me(&mut bob).await, ("bob".to_owned(), false));
    assert_eq!(claims(&bob)["admin"], false);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_with_the_directorys_ca_file() {
    let directory = Slapd::start();
    let ldap = LdapConfig {
        ca_file: Some(directory.pki.ca.clone()),
        ..search_then_bind(directory.ldaps_url())
    };
    let hub = ldap_hub("ldap-ldaps", ldap).await;
    let alice = signed_in(&hub, "alice", &slapd::password("alice")).await;
    assert_eq!(groups(&alice), ["proj-42", "staff"]);
    refused(&hub, "alice", "wrong", StatusCode::FORBIDDEN, BAD_CREDENTIALS).await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_the_directorys_ca_file() {
    let directory = Slapd::start();
    let ldap = LdapConfig {
        starttls: true,
        ca_file: Some(directory.pki.ca.clone()),
        ..bind_template(directory.url())
    };
    let hub = ldap_hub("ldap-starttls", ldap).await;
    let mut alice = signed_in(&hub, "alice", &slapd::password("alice")).await;
    assert_eq!(me(&mut alice).await.0, "alice");
    refused(&hub, "alice", "wrong", StatusCode::FORBIDDEN, BAD_CREDENTIALS).await;
    hub.stop().await;
}

/// A certificate the hub cannot trust is the directory being unusable (503), never a wrong
/// password: over ldaps and StartTLS, with another CA as `ca_file` and with the system roots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_directory_certificate_is_unavailable_not_a_wrong_password() {
    let directory = Slapd::start();
    let other = slapd::Pki::new(&temp_dir("ldap-other-ca"));
    let configs = [
        LdapConfig {
            ca_file: Some(other.ca.clone()),
            ..bind_template(directory.ldaps_url())
        },
        LdapConfig {
            starttls: true,
            ca_file: Some(other.ca.clone()),
            ..bind_template(directory.url())
        },
        bind_template(directory.ldaps_url()),
    ];
    for (n, ldap) in configs.into_iter().enumerate() {
        let what = format!("{} starttls={} ca_file={:?}", ldap.url, ldap.starttls, ldap.ca_file);
        let hub = ldap_hub(&format!("ldap-untrusted-{n}"), ldap).await;
        let (c, r) = sign_in(&hub, "alice", &slapd::password("alice")).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {}", r.text());
        assert!(r.text().contains(UNREACHABLE), "{what}: {}", r.text());
        assert!(!c.cookies.contains_key("edgehub-token"), "{what}");
        hub.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_is_down_makes_the_login_page_answer_503() {
    let mut directory = Slapd::start();
    let hub = ldap_hub("ldap-down", bind_template(directory.url())).await;
    signed_in(&hub, "alice", &slapd::password("alice")).await;

    directory.kill();
    refused(
        &hub,
        "alice",
        &slapd::password("alice"),
        StatusCode::SERVICE_UNAVAILABLE,
        UNREACHABLE,
    )
    .await;
    // Not "wrong password" for a wrong one either: the directory was not asked.
    refused(&hub, "alice", "wrong", StatusCode::SERVICE_UNAVAILABLE, UNREACHABLE).await;
    hub.stop().await;
}

/// A directory that takes the connection and never answers: 503 once `timeout_secs` is up, not
/// a login page that hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_never_answers_times_out_as_unavailable() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", silent.local_addr().unwrap());
    let ldap = LdapConfig {
        timeout_secs: 1,
        ..search_then_bind(url)
    };
    let hub = ldap_hub("ldap-silent", ldap).await;
    let began = Instant::now();
    refused(
        &hub,
        "alice",
        "some password",
        StatusCode::SERVICE_UNAVAILABLE,
        UNREACHABLE,
    )
    .await;
    assert!(began.elapsed() < Duration::from_secs(5), "took {:?}", began.elapsed());
    drop(silent);
    hub.stop().await;
}
