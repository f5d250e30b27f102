use super::{ProxyArgs, Run};
use crate::ui::Ui;

impl Run for ProxyArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
