//! The token page (`/hub/token`, JupyterHub's): the user's API tokens with their note, scopes,
//! dates and a Revoke button, and a form to make one (note, lifetime, scopes). A new token is
//! shown once, in place; the hub keeps only its hash.

use std::fmt::Write;

use super::admin::button;
use super::escape::escape;
use super::{PageContext, layout, urls};

/// One token as the page lists it.
#[derive(Debug, Clone)]
pub struct TokenView {
    pub id: String,
    pub note: String,
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub created: Option<String>,
    pub expires: Option<String>,
}

pub fn tokens(ctx: &PageContext, tokens: &[TokenView]) -> String {
    let base = &ctx.base;
    let user = ctx.user.as_deref().unwrap_or_default();
    let mut main = String::with_capacity(4096);
    let _ = write!(
        main,
        r#"<div class="manage" data-manage>
<h1>API tokens</h1>
<p class="status" role="status" data-status></p>
<noscript><p class="note">Making and revoking tokens on this page needs JavaScript.</p></noscript>
<section class="card" aria-labelledby="new-token-heading">
<h2 id="new-token-heading">New token</h2>
<form data-api-form data-api-url="{api}">
<label for="token-note">Note</label>
<input id="token-note" name="note" type="text" maxlength="255" placeholder="What it is for">
<label for="token-expires">Expires in</label>
<select id="token-expires" name="expires_in" data-number>
<option value="3600">1 hour</option>
<option value="86400">1 day</option>
<option value="604800">1 week</option>
<option value="" selected>never</option>
</select>
<label for="token-scopes">Scopes (empty: all you hold; e.g. <code>read:users!user={user}</code>)</label>
<input id="token-scopes" name="scopes" data-list type="text" autocomplete="off" autocapitalize="off" spellcheck="false">
<button type="submit" class="primary">Request new token</button>
</form>
<div class="note" data-new-token hidden>
<p>Your new token, shown this once: copy it now.</p>
<p><code></code></p>
</div>
</section>
<section class="card" aria-labelledby="tokens-heading">
<h2 id="tokens-heading">Your tokens</h2>
"#,
        api = escape(&urls::tokens_api(base, user, None)),
        user = escape(user),
    );
    if tokens.is_empty() {
        main.push_str("<p class=\"muted\">You have no API tokens.</p>\n");
    } else {
        main.push_str(
            "<table class=\"server-table\" data-tokens>\n<thead><tr><th scope=\"col\">Note</th><th scope=\"col\">Scopes</th>\
             <th scope=\"col\">Created</th><th scope=\"col\">Expires</th><th scope=\"col\">Actions</th></tr></thead>\n<tbody>\n",
        );
        for token in tokens {
            let time = |t: &Option<String>| {
                t.as_deref().map_or_else(
                    || "never".to_owned(),
                    |t| format!(r#"<time datetime="{t}" data-relative>{t}</time>"#, t = escape(t)),
                )
            };
            let _ = write!(
                main,
                r#"<tr data-token="{id}">
<th scope="row">{note}</th>
<td data-label="Scopes">{scopes}</td>
<td data-label="Created">{created}</td>
<td data-label="Expires">{expires}</td>
<td><div class="actions">{revoke}</div></td>
</tr>
"#,
                id = escape(&token.id),
                note = escape(&token.note),
                scopes = escape(&token.scopes.join(" ")),
                created = time(&token.created),
                expires = time(&token.expires),
                revoke = button(
                    "DELETE",
                    &urls::tokens_api(base, user, Some(&token.id)),
                    None,
                    "Revoke",
                    None
                ),
            );
        }
        main.push_str("</tbody>\n</table>\n");
    }
    main.push_str("</section>\n</div>\n");
    layout::page(ctx, "API tokens", "", &main)
}
