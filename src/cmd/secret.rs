use super::{Run, SecretArgs};
use crate::ui::Ui;

impl Run for SecretArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
