use super::{PushArgs, Run};
use crate::ui::Ui;

impl Run for PushArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
