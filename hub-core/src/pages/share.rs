//! The page a share code leads to (`/hub/accept-share?code=…`, JupyterHub's): whose server it
//! is, what accepting grants, and one button. A plain form (the code and the `_xsrf` token in
//! hidden fields), so it works without the page script.

use std::fmt::Write;

use super::escape::escape;
use super::{PageContext, layout};

/// The offer a share code makes to the signed-in user.
#[derive(Debug, Clone)]
pub struct ShareOffer {
    pub owner: String,
    /// `""` for the default server.
    pub server: String,
    pub scopes: Vec<String>,
    pub code: String,
}

pub fn accept_share(ctx: &PageContext, offer: &ShareOffer) -> String {
    let what = if offer.server.is_empty() {
        format!("{}'s server", offer.owner)
    } else {
        format!("{}'s server “{}”", offer.owner, offer.server)
    };
    let mut main = String::with_capacity(1024);
    let _ = write!(
        main,
        r#"<section class="card narrow" aria-labelledby="accept-heading">
<h1 id="accept-heading">Accept a shared server</h1>
<p>{what} is shared with you. Accepting lets you:</p>
<ul>
"#,
        what = escape(&what),
    );
    for scope in &offer.scopes {
        let _ = writeln!(main, "<li><code>{}</code></li>", escape(scope));
    }
    let _ = write!(
        main,
        r#"</ul>
<form method="post" action="{action}">
<input type="hidden" name="code" value="{code}">
<input type="hidden" name="_xsrf" value="{xsrf}">
<button type="submit" class="primary">Accept</button>
</form>
</section>
"#,
        action = escape(&format!("{}hub/accept-share", ctx.base)),
        code = escape(&offer.code),
        xsrf = escape(&ctx.xsrf),
    );
    layout::page(ctx, "Accept a shared server", "", &main)
}
