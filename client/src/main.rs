//! `parley-cli`: flags in, exit status out; everything else is in the library.

fn main() {
    let code = parley_cli::main_with_args(std::env::args().skip(1).collect());
    std::process::exit(code);
}
