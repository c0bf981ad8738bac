//! `parley-load`: flags to a scenario run; see `parley_load::cli`.

fn main() {
    match parley_load::cli::parse(std::env::args().skip(1)) {
        Ok(Some(args)) => {
            if let Err(e) = parley_load::cli::run(args) {
                eprintln!("parley-load: {e}");
                std::process::exit(1);
            }
        }
        Ok(None) => print!("{}", parley_load::cli::USAGE),
        Err(e) => {
            eprintln!("parley-load: {e}");
            std::process::exit(2);
        }
    }
}
