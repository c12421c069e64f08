//! Marks the integration tests this machine cannot run as ignored, with the reason
//! (`sluice_testkit::build`); the crate itself does not use these cfgs.

fn main() {
    sluice_testkit::build::declare_test_cfgs();
}
