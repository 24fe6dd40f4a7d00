//! Prints the config `drctl lab up` writes with its default ports:
//! `cargo run -p drctl-lab --example print_lab_config > config/lab.toml`.
fn main() {
    let preview = drctl_lab::LabRecord::standard_preview("/tmp/drctl-lab".into());
    print!("{}", drctl_lab::lab_config_toml(&preview));
}
