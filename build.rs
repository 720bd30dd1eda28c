//! Names the source this build was made from, for the series cache: series a different
//! source wrote may render differently, so a cache file carries this id and is used only by
//! a build of the same source (the library and every binary linking it share it).

use std::hash::Hasher;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let mut paths = Vec::new();
    files(Path::new("src"), &mut paths);
    paths.push(PathBuf::from("Cargo.lock"));
    paths.sort();
    // SipHash with fixed keys: the same bytes give the same id on every build.
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    for path in &paths {
        hasher.write(path.to_string_lossy().as_bytes());
        hasher.write(&std::fs::read(path).unwrap_or_default());
    }
    let low = hasher.finish();
    hasher.write(b"high");
    let high = hasher.finish();
    println!("cargo:rustc-env=PXB_SOURCE_ID={high:016x}{low:016x}");
}
