use super::{ExecArgs, Run};
use crate::ui::Ui;

impl Run for ExecArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
