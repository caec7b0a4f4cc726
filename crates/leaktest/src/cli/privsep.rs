//! The command line's side of privilege separation (see `leaktest_priv`):
//! which sandbox a run gets from `--user` and `--no-sandbox`.

use anyhow::{bail, Context};
use leaktest_priv::{Sandbox, User};

/// The sandbox of a run: `None` with `--no-sandbox`. As root the sandboxed
/// process becomes `user` (default [`leaktest_priv::PACKAGE_USER`], else
/// `nobody`); started with capabilities only it keeps its uid and loses the
/// capabilities (`--user` must then name that uid).
pub fn sandbox_for(user: Option<&str>, no_sandbox: bool) -> anyhow::Result<Option<Sandbox>> {
    if no_sandbox {
        return Ok(None);
    }
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let user = match (user, root) {
        (Some(u), true) => Some(User::resolve(u).context("--user")?),
        (None, true) => Some(User::default_user().context("the sandbox user")?),
        (Some(u), false) => {
            let u = User::resolve(u).context("--user")?;
            // SAFETY: no preconditions.
            if u.uid != unsafe { libc::getuid() } {
                bail!("{}", leaktest_priv::PrivError::NeedsRoot(u.name));
            }
            Some(u)
        }
        (None, false) => None,
    };
    Ok(Some(Sandbox::new(user)?))
}

/// A note for the moment the sandboxed process starts when it runs as
/// `nobody`: that uid is shared with other daemons, which can signal it.
pub fn user_note(sandbox: &Sandbox) -> Option<String> {
    let u = sandbox.user()?;
    (u.name == leaktest_priv::FALLBACK_USER).then(|| {
        format!(
            "the sandboxed process runs as {} (uid {}), shared with other daemons: the Debian \
             package creates a `{}` user for it, or pick one with --user",
            u.name,
            u.uid,
            leaktest_priv::PACKAGE_USER
        )
    })
}
