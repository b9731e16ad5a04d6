use failure::Error;
use std::fs;
use std::path::PathBuf;

pub mod generate_messages;

/// Weir's local driver: generates messages from the JSON files in argv[1] into argv[2]/messages/.
fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let mut inputs: Vec<PathBuf> = fs::read_dir(&args[1])?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension() == Some("json".as_ref()))
        .collect();
    inputs.sort();
    let out = format!("{}/messages", args[2]);
    fs::create_dir_all(&out)?;
    generate_messages::run(&out, inputs)?;
    Ok(())
}
