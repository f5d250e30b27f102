use super::{Run, ShellInitArgs};
use crate::ui::Ui;

impl Run for ShellInitArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
