use super::{DoctorArgs, Run};
use crate::ui::Ui;

impl Run for DoctorArgs {
    fn run(self, _ui: &Ui) -> anyhow::Result<i32> {
        anyhow::bail!("not implemented yet")
    }
}
