//! Rebuilds the collector when the files it embeds change (see `src/assets.rs`): rust-embed
//! tracks the files it found, but not files added later, such as `dist/` after the first
//! `cargo xtask build`.

fn main() {
    for dir in ["../dist", "../www/demo", "../www/dashboard", "../www/index.html", "../pkg-config/plans/trackly.json"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
