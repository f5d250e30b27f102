use super::{AwsArgs, Run};
use crate::ui::Ui;

impl Run for AwsArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
