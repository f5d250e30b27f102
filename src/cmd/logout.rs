use super::{LogoutArgs, Run};
use crate::ui::Ui;

impl Run for LogoutArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
