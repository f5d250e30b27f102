use super::{RemoveArgs, Run};
use crate::ui::Ui;

impl Run for RemoveArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
