//! Confirming deletions that cannot be undone: on a terminal the user types the id; elsewhere
//! (scripts, CI) `--yes` says it, so a pasted command never deletes by accident.

use std::io::{BufRead, IsTerminal, Write};

use crate::CliError;
use crate::args::Confirm;

/// Goes on when `confirm` says yes, or when the user types `id` on a terminal; refuses otherwise,
/// having deleted nothing. `what` names what goes with the `kind` `id`.
pub(crate) fn deletion(kind: &str, id: &str, what: &str, confirm: &Confirm) -> Result<(), CliError> {
    if confirm.yes {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(CliError::Usage(format!(
            "deleting {kind} {id} also deletes {what}, and cannot be undone: pass --yes to confirm (nothing was deleted)"
        )));
    }
    eprint!("Deleting {kind} {id} also deletes {what}, and cannot be undone.\nType {id} to confirm: ");
    let _ = std::io::stderr().flush();
    let mut typed = String::new();
    std::io::stdin().lock().read_line(&mut typed).map_err(|e| CliError::Io(format!("reading stdin: {e}")))?;
    if typed.trim() == id {
        Ok(())
    } else {
        Err(CliError::Usage(format!("not confirmed: {kind} {id} was not deleted")))
    }
}
