use super::{LoginArgs, Run};
use crate::ui::Ui;

impl Run for LoginArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
