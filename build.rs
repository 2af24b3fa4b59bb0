//! Builds the C shim against Asterisk's headers and generates Rust bindings for the project's
//! own header (never Asterisk's: see ASTERISK-NOTES.md).
//!
//! `ASTERISK_INCLUDE_DIR` must name a folder holding `asterisk.h` and `asterisk/` — the headers
//! of the Asterisk the module will be loaded into (`asterisk/sandbox.sh include-dir` prints the
//! sandbox's). The shim is linked whole into the cdylib only, so its module constructor
//! survives and the rlib (core + unit tests) never needs Asterisk's symbols.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=include/res_webhook.h");
    println!("cargo:rerun-if-changed=asterisk/res_webhook_shim.c");
    println!("cargo:rerun-if-env-changed=ASTERISK_INCLUDE_DIR");

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    bindgen::Builder::default()
        .header("include/res_webhook.h")
        .allowlist_function("rw_.*")
        .allowlist_type("rw_.*")
        .allowlist_var("RW_.*")
        .generate()
        .expect("bindgen failed on include/res_webhook.h")
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write bindings.rs");

    let Some(ast_inc) = env::var_os("ASTERISK_INCLUDE_DIR").map(PathBuf::from) else {
        fail("ASTERISK_INCLUDE_DIR is not set");
    };
    if !ast_inc.join("asterisk.h").is_file() || !ast_inc.join("asterisk").is_dir() {
        fail(&format!(
            "ASTERISK_INCLUDE_DIR={} does not hold asterisk.h and asterisk/",
            ast_inc.display()
        ));
    }

    cc::Build::new()
        .file("asterisk/res_webhook_shim.c")
        .include("include")
        .include(&ast_inc)
        .define("AST_MODULE", "\"res_webhook\"")
        .define("AST_MODULE_SELF_SYM", "__internal_res_webhook_self")
        .define("_GNU_SOURCE", None)
        .pic(true)
        .flag("-fno-strict-aliasing")
        .warnings(true)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-old-style-declaration")
        .flag_if_supported("-Wno-missing-field-initializers")
        .cargo_metadata(false)
        .compile("rwshim");

    // The shim's calls into Rust (the hook's among them) bind inside the module: direct calls,
    // not through the PLT and a GOT entry, each one more cache line and page on a cold path
    // (with the hook's Rust side inlined: its p99 at 20 calls/s 3.6-4.6 -> 3.1-3.6 µs, README
    // Performance).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    // Whole-archive: otherwise the linker drops the object holding AST_MODULE_INFO's constructor.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--whole-archive");
    println!(
        "cargo:rustc-cdylib-link-arg={}",
        out.join("librwshim.a").display()
    );
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-whole-archive");
}

fn fail(why: &str) -> ! {
    eprintln!(
        "\nres_webhook: cannot build the Asterisk shim: {why}.\n\
         Point ASTERISK_INCLUDE_DIR at the headers of the Asterisk you load the module into\n\
         (a folder with asterisk.h and asterisk/), e.g.\n\
         \x20   ASTERISK_INCLUDE_DIR=/usr/include cargo build --release          # Debian asterisk-dev\n\
         \x20   ASTERISK_INCLUDE_DIR=$(asterisk/sandbox.sh include-dir) cargo build --release\n"
    );
    std::process::exit(1);
}
