use super::{EnvArgs, Run};
use crate::ui::Ui;

impl Run for EnvArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
