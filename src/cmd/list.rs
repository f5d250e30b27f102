use super::{ListArgs, Run};
use crate::ui::Ui;

impl Run for ListArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
