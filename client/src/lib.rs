//! parley-cli: the terminal client of the Parley chat server.
//!
//! It speaks only the public contract (`docs/PROTOCOL.md`): REST for accounts and
//! rooms, one WebSocket for everything live.
//!
//! # Layout
//! - [`args`]: command-line flags and `--help`.
//! - [`http`]: a minimal HTTP/1.1 client; [`api`]: the REST calls on top of it;
//!   [`tls`]: rustls under both for `https://` and `wss://`.
//! - [`protocol`]: the JSON frames and bodies as serde types.
//! - [`conn`]: the WebSocket thread: connect, pump frames, reconnect with back-off.
//! - [`timeline`]: per-room seq tracking, so every entry shows exactly once and in order,
//!   holes filled by `sync` first; [`outbox`]: sent-but-unacknowledged messages, matched
//!   by nonce after a reconnect; [`talk`]: own messages shown, read markers and typing,
//!   with their throttles.
//! - [`commands`]: what a typed line means; [`app`]: the thread that owns the session and
//!   carries commands out; [`render`]: how events look.
//! - [`ui`]: line editing, password prompts and printing on a terminal, plain lines
//!   otherwise.
//!
//! Threads: the main thread reads input (on a terminal, rustyline); the app thread owns
//! all state; the connection thread owns the socket. They talk over crossbeam channels.

pub mod api;
pub mod app;
pub mod args;
pub mod commands;
pub mod conn;
pub mod http;
pub mod outbox;
pub mod protocol;
pub mod render;
pub mod talk;
pub mod timeline;
pub mod tls;
pub mod ui;

use std::io::{self, BufRead, IsTerminal};
use std::sync::{Arc, Mutex};
use std::thread;

use app::{App, PasswordSource, Setup};
use args::Parsed;
use render::Style;
use ui::{Input, Printer, Terminal};

/// Run the client with `argv` (without the program name); returns the exit status.
pub fn main_with_args(argv: Vec<String>) -> i32 {
    let args = match args::parse(argv, std::env::var("PARLEY_SERVER").ok()) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => {
            print!("{}", args::HELP);
            return 0;
        }
        Ok(Parsed::Version) => {
            println!("parley-cli {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Err(e) => {
            eprintln!("parley-cli: {e}");
            return 2;
        }
    };

    let stdin = io::stdin();
    let interactive = stdin.is_terminal();

    let password = if args.password_stdin {
        let mut first = String::new();
        match stdin.lock().read_line(&mut first) {
            Ok(n) if n > 0 && !first.trim_end_matches(['\n', '\r']).is_empty() => {
                PasswordSource::Given(first.trim_end_matches(['\n', '\r']).to_owned())
            }
            _ => {
                eprintln!(
                    "parley-cli: --password-stdin: no password on the first line of standard input"
                );
                return 2;
            }
        }
    } else {
        match std::env::var("PARLEY_PASSWORD") {
            Ok(p) if !p.is_empty() => PasswordSource::Given(p),
            _ if interactive => PasswordSource::Ask,
            _ => PasswordSource::Missing,
        }
    };

    let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
        || std::env::var("TERM").is_ok_and(|t| t == "dumb");
    let style = Style {
        colour: interactive && io::stdout().is_terminal() && !no_colour,
        utc_offset_secs: render::local_utc_offset().unwrap_or(0),
    };
    let api = api::Api::new(args.server.clone());
    let completions = Arc::new(Mutex::new(Vec::new()));
    // Bounded: a script piped in faster than it can be sent waits here.
    let (lines_tx, lines_rx) = crossbeam_channel::bounded::<Input>(256);

    if !interactive {
        thread::spawn(move || ui::read_lines(io::stdin().lock(), lines_tx));
        let app = App::new(Setup {
            api,
            style,
            printer: Printer::stdout(),
            password,
            user: args.user,
            invite_code: args.invite_code,
            ui: None,
            completions,
        });
        return app.run(lines_rx);
    }

    let mut term = match Terminal::new(completions.clone()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("parley-cli: cannot set up the terminal: {e}");
            return 1;
        }
    };
    let printer = term.printer();
    let (ui_tx, ui_rx) = crossbeam_channel::bounded(4);
    let app = App::new(Setup {
        api,
        style,
        printer,
        password,
        user: args.user,
        invite_code: args.invite_code,
        ui: Some(ui_tx),
        completions,
    });
    let app_thread = match thread::Builder::new()
        .name("parley-app".into())
        .spawn(move || app.run(lines_rx))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("parley-cli: cannot start: {e}");
            return 1;
        }
    };
    term.run(lines_tx, ui_rx);
    app_thread.join().unwrap_or(1)
}
