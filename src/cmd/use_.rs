use super::{Run, UseArgs};
use crate::ui::Ui;

impl Run for UseArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
