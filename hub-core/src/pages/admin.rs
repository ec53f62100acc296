//! The admin page (`/hub/admin`, JupyterHub's): every user with their server and groups, with
//! Start, Stop and Delete; a form to add users; every group with its members, a form to add
//! members, Remove and Delete; a form to make a group. The buttons and forms call the REST API
//! from the page script (`[data-manage]`), which reloads the page on success, so what is shown
//! is always what the hub holds.

use std::fmt::Write;

use super::escape::escape;
use super::{PageContext, ServerPhase, layout, urls};

/// One user as the admin page lists them.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub name: String,
    pub admin: bool,
    /// Their default server's phase.
    pub phase: ServerPhase,
    /// RFC 3339, if known.
    pub last_activity: Option<String>,
    pub groups: Vec<String>,
}

/// One group as the admin page lists it.
#[derive(Debug, Clone)]
pub struct AdminGroup {
    pub name: String,
    pub users: Vec<String>,
}

pub fn admin(ctx: &PageContext, users: &[AdminUser], groups: &[AdminGroup]) -> String {
    let base = &ctx.base;
    let mut main = String::with_capacity(4096 + users.len() * 512);
    main.push_str(
        "<div class=\"manage\" data-manage>\n<h1>Admin</h1>\n<p class=\"status\" role=\"status\" data-status></p>\n\
         <noscript><p class=\"note\">The buttons on this page need JavaScript.</p></noscript>\n",
    );
    users_section(&mut main, base, users);
    groups_section(&mut main, base, groups);
    main.push_str("</div>\n");
    layout::page(ctx, "Admin", "", &main)
}

fn users_section(main: &mut String, base: &str, users: &[AdminUser]) {
    let _ = write!(
        main,
        r#"<section class="card" aria-labelledby="users-heading">
<h2 id="users-heading">Users</h2>
<table class="server-table" data-users>
<thead><tr><th scope="col">User</th><th scope="col">Server</th><th scope="col">Groups</th><th scope="col">Last activity</th><th scope="col">Actions</th></tr></thead>
<tbody>
"#
    );
    for user in users {
        let server_api = urls::server_api(base, &user.name, "");
        let server_action = match user.phase {
            ServerPhase::Stopped => button("POST", &server_api, None, "Start server", None),
            ServerPhase::Running | ServerPhase::Pending => button("DELETE", &server_api, None, "Stop server", None),
            ServerPhase::Stopping => String::new(),
        };
        let delete = button(
            "DELETE",
            &urls::user_api(base, &user.name),
            None,
            "Delete user",
            Some(&format!("Delete {} and stop their servers?", user.name)),
        );
        let _ = write!(
            main,
            r#"<tr data-user="{name}">
<th scope="row">{name}{admin}</th>
<td data-label="Server">{phase}</td>
<td data-label="Groups">{groups}</td>
<td data-label="Last activity">{activity}</td>
<td><div class="actions">{server_action}{delete}</div></td>
</tr>
"#,
            name = escape(&user.name),
            admin = if user.admin {
                " <span class=\"badge\">admin</span>"
            } else {
                ""
            },
            phase = phase_text(user.phase),
            groups = if user.groups.is_empty() {
                "—".to_owned()
            } else {
                escape(&user.groups.join(", ")).into_owned()
            },
            activity = user.last_activity.as_deref().map_or_else(
                || "—".to_owned(),
                |t| format!(r#"<time datetime="{t}" data-relative>{t}</time>"#, t = escape(t))
            ),
        );
    }
    let _ = write!(
        main,
        r#"</tbody>
</table>
<form class="new-server" data-api-form data-api-url="{api}">
<label for="new-users">Add users (names separated by spaces or commas)</label>
<div class="inline">
<input id="new-users" name="usernames" data-list type="text" required autocomplete="off" autocapitalize="off" spellcheck="false">
<label class="check"><input name="admin" type="checkbox"> admin</label>
<button type="submit" class="primary">Add users</button>
</div>
</form>
</section>
"#,
        api = escape(&urls::users_api(base)),
    );
}

fn groups_section(main: &mut String, base: &str, groups: &[AdminGroup]) {
    main.push_str(
        "<section class=\"card\" aria-labelledby=\"groups-heading\">\n<h2 id=\"groups-heading\">Groups</h2>\n",
    );
    if groups.is_empty() {
        main.push_str("<p class=\"muted\">No groups yet.</p>\n");
    }
    for group in groups {
        let members_api = urls::group_api(base, Some(&group.name), "/users");
        let _ = write!(
            main,
            r#"<div class="group" data-group="{name}">
<h3>{name}</h3>
<ul class="members">
"#,
            name = escape(&group.name),
        );
        for user in &group.users {
            let body = serde_json::json!({"users": [user]}).to_string();
            let _ = writeln!(
                main,
                r#"<li data-member="{user}">{user} {remove}</li>"#,
                user = escape(user),
                remove = button("DELETE", &members_api, Some(&body), "Remove", None),
            );
        }
        let id = format!("add-to-{}", group.name);
        let _ = write!(
            main,
            r#"</ul>
<form class="inline" data-api-form data-api-url="{api}">
<label for="{id}">Add members</label>
<input id="{id}" name="users" data-list type="text" required autocomplete="off" autocapitalize="off" spellcheck="false">
<button type="submit">Add members</button>
</form>
<div class="actions">{delete}</div>
</div>
"#,
            api = escape(&members_api),
            id = escape(&id),
            delete = button(
                "DELETE",
                &urls::group_api(base, Some(&group.name), ""),
                None,
                "Delete group",
                Some(&format!("Delete the group {}?", group.name)),
            ),
        );
    }
    let _ = write!(
        main,
        r#"<form class="new-server" data-api-form data-api-url="{api}">
<label for="new-group">New group</label>
<div class="inline">
<input id="new-group" name="group" data-wrap="groups" type="text" required autocomplete="off" autocapitalize="off" spellcheck="false">
<label for="new-group-users">members</label>
<input id="new-group-users" name="users" data-list type="text" autocomplete="off" autocapitalize="off" spellcheck="false">
<button type="submit" class="primary">Add group</button>
</div>
</form>
</section>
"#,
        api = escape(&urls::group_api(base, None, "")),
    );
}

fn phase_text(phase: ServerPhase) -> &'static str {
    match phase {
        ServerPhase::Stopped => "stopped",
        ServerPhase::Pending => "starting",
        ServerPhase::Running => "running",
        ServerPhase::Stopping => "stopping",
    }
}

/// A button the page script turns into an API call (`data-api-*`), with an optional JSON body
/// and a question to confirm first.
pub(super) fn button(method: &str, url: &str, body: Option<&str>, label: &str, confirm: Option<&str>) -> String {
    let mut b = format!(
        r#"<button type="button" data-api-method="{method}" data-api-url="{url}""#,
        url = escape(url)
    );
    if let Some(body) = body {
        let _ = write!(b, r#" data-api-body="{}""#, escape(body));
    }
    if let Some(question) = confirm {
        let _ = write!(b, r#" data-confirm="{}""#, escape(question));
    }
    let _ = write!(b, ">{}</button>", escape(label));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_buttons_carry_their_calls() {
        let ctx = PageContext {
            base: "/".into(),
            user: Some("root".into()),
            admin: true,
            services: Vec::new(),
            xsrf: "x".into(),
            announcements: Vec::new(),
        };
        let html = admin(
            &ctx,
            &[AdminUser {
                name: "a<b".into(),
                admin: true,
                phase: ServerPhase::Running,
                last_activity: None,
                groups: vec!["proj".into()],
            }],
            &[AdminGroup {
                name: "proj".into(),
                users: vec!["a<b".into()],
            }],
        );
        assert!(!html.contains("a<b"), "escaped everywhere");
        assert!(html.contains(r#"data-api-method="DELETE" data-api-url="/hub/api/users/a%3Cb/server""#));
        assert!(html.contains(r#"data-api-body="{&quot;users&quot;:[&quot;a&lt;b&quot;]}""#));
        assert!(html.contains(">Stop server</button>"));
        assert!(html.contains(r#"data-api-url="/hub/api/groups""#));
    }
}
