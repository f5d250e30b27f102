use super::{CompletionsArgs, Run};
use crate::ui::Ui;

impl Run for CompletionsArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
