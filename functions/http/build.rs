//! Bundles the grading page (`clients/grading/dist`, built by `npm run build --prefix
//! clients`) into the function: a Lambda package holds only its bootstrap, so the files
//! travel inside it. A build without the page still builds; `/grade/` then says how to
//! bundle it.

use std::fmt::Write;
use std::path::Path;

const FILES: [(&str, &str); 3] = [
    ("index.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("styles.css", "text/css; charset=utf-8"),
];

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/grading/dist");
    let mut out = String::from("pub static PAGE: &[(&str, &str, &[u8])] = &[\n");
    for (name, kind) in FILES {
        let path = dist.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        if path.exists() {
            let _ = writeln!(
                out,
                "    ({name:?}, {kind:?}, include_bytes!({:?})),",
                path.display().to_string()
            );
        }
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("page.rs");
    std::fs::write(target, out).expect("write the page's file list");
}
