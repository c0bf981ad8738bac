//! The terminal side: reading lines (rustyline on a terminal, plain lines otherwise),
//! asking for passwords without echo, and printing without garbling the typed line.
//!
//! On a terminal the main thread owns the line editor and the app thread owns everything
//! else. They take turns through two channels: the editor sends each line as an
//! [`Input`], then waits for the app's [`UiRequest::Ready`] carrying the next prompt
//! (which may have changed: `/join` moves you to another room). A password is asked for
//! in between, with [`UiRequest::Password`]. Incoming messages are printed through
//! rustyline's `ExternalPrinter`, which redraws the prompt and the half typed line below
//! them. The prompt is a [`LivePrompt`] the app keeps current meanwhile (a kick or a
//! reconnect changes it), so each redraw shows where the line will go.
//!
//! That printer is driven by a thread of its own, never by the app thread: while a line
//! is being read, rustyline hands each message to the editor over a channel of one slot,
//! so a second message blocks until the editor takes the first. If Enter is pressed just
//! then, the editor leaves `readline` with the first still in the slot and waits for the
//! app's next prompt, while the app, blocked on the second, never sends it: the client
//! froze. Now only the printer thread waits; before each prompt the app lets it finish
//! what it was given (for a bounded time), so output still comes before the prompt.
//!
//! Typing: rustyline has no keystroke callback without its custom-bindings feature, but
//! it asks the helper's [`Hinter`] for a hint after every edit of the line. The helper
//! answers no hint and, when the line being composed changed and is a message (not a
//! command), sends [`Input::Typing`] to the app, at most once per [`TYPING_SIGNAL`];
//! the app throttles what it sends the server further.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rustyline::completion::Completer;
use rustyline::config::Configurer;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{
    ColorMode, Config, Context, Editor, ExternalPrinter, GraphemeClusterMode, Helper, Prompt,
};

use crate::commands;

/// From the input side to the app.
#[derive(Debug)]
pub enum Input {
    Line(String),
    /// The user is composing a message: the line being typed changed (terminal only).
    Typing,
    /// End of input (Ctrl-D, or end of a script).
    Eof,
}

/// At most one [`Input::Typing`] per this interval. Default is 1 s: the app sends the
/// server at most one `typing` frame per room every 2 s, so more would only be dropped.
pub const TYPING_SIGNAL: Duration = Duration::from_secs(1);

/// What the prompt says: `user@room (offline)> `, in parts, so that a prompt changed
/// while a line is typed can be fitted into the width the line editor measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptText {
    /// The user, or `parley` before a login.
    pub user: String,
    /// `@` and the current room's label; empty for no room.
    pub room: String,
    /// ` (offline)`, or empty.
    pub state: String,
    /// Bold user, cyan room, dim state.
    pub colour: bool,
}

impl PromptText {
    /// Without escape sequences: what rustyline measures.
    pub fn plain(&self) -> String {
        format!("{}{}{}> ", self.user, self.room, self.state)
    }

    /// What is drawn: the same text, coloured if asked for.
    pub fn styled(&self) -> String {
        if self.colour {
            format!(
                "\x1b[1m{}\x1b[0m\x1b[36m{}\x1b[0m\x1b[2m{}\x1b[0m> ",
                self.user, self.room, self.state
            )
        } else {
            self.plain()
        }
    }
}

/// Most changes one line's prompt takes; later ones show from the next line on. Default
/// is 64: each is the app's state changing under the line (a room lost, the connection
/// back), so a line typed through more than a few is already rare.
pub const MAX_PROMPT_CHANGES: usize = 64;

/// The prompt of the line being read, which the app may change while the line is typed:
/// a kick, a ban or a deleted room moves the user to another room (or none), a
/// reconnect drops `(offline)`. rustyline asks for the text at every redraw, and the app
/// changes the prompt before it prints what happened, which causes one.
///
/// rustyline measures the prompt once per line and places the cursor by that width, so
/// a later version is shown fitted to the first one's width: padded with spaces when
/// narrower; when wider, without ` (offline)`, then with the room's label cut short
/// with `…`. The next line shows the prompt whole. A version that cannot fit at all (a
/// room appearing on a prompt that had none) waits for the next line.
///
/// Versions form a chain of `OnceLock`s: only the app appends, and the editor borrows
/// the newest text for as long as rustyline needs it, with no lock to hold meanwhile.
#[derive(Debug)]
pub struct LivePrompt {
    first: Version,
    /// The first version as it is: its width is the one rustyline measured.
    whole: Shown,
}

#[derive(Debug)]
struct Version {
    text: PromptText,
    /// `text` as drawn, fitted to the first version's width: made by the editor when it
    /// first draws this version (`None` if it cannot fit). Unused in the first.
    shown: OnceLock<Option<Shown>>,
    next: OnceLock<Box<Version>>,
}

#[derive(Debug)]
struct Shown {
    plain: String,
    styled: String,
}

impl Version {
    fn new(text: PromptText) -> Version {
        Version {
            text,
            shown: OnceLock::new(),
            next: OnceLock::new(),
        }
    }

    fn versions(&self) -> impl Iterator<Item = &Version> {
        std::iter::successors(Some(self), |v| v.next.get().map(|b| &**b))
    }
}

impl LivePrompt {
    pub fn new(text: PromptText) -> LivePrompt {
        let whole = Shown {
            plain: text.plain(),
            styled: text.styled(),
        };
        LivePrompt {
            first: Version::new(text),
            whole,
        }
    }

    /// The newest text asked for.
    pub fn text(&self) -> &PromptText {
        &self.last().text
    }

    /// From now on the prompt says `text` (app side). Nothing happens if it says so
    /// already or after [`MAX_PROMPT_CHANGES`].
    pub fn change(&self, text: PromptText) {
        let last = self.last();
        if last.text == text || self.first.versions().count() > MAX_PROMPT_CHANGES {
            return;
        }
        // The app thread is the only writer: the slot is free.
        let _ = last.next.set(Box::new(Version::new(text)));
    }

    fn last(&self) -> &Version {
        let mut last = &self.first;
        for v in self.first.versions() {
            last = v;
        }
        last
    }

    /// What to draw now (editor side): the newest version that fits.
    fn shown(&self, gcm: GraphemeClusterMode) -> &Shown {
        let width = usize::from(gcm.width(&self.whole.plain));
        let mut newest = &self.whole;
        for v in self.first.versions().skip(1) {
            if let Some(s) = v.shown.get_or_init(|| fit(&v.text, width, gcm)) {
                newest = s;
            }
        }
        newest
    }
}

/// `text` drawn in exactly `width` columns, if it can be (see [`LivePrompt`]).
fn fit(text: &PromptText, width: usize, gcm: GraphemeClusterMode) -> Option<Shown> {
    let w = |s: &str| usize::from(gcm.width(s));
    let mut t = text.clone();
    if w(&t.plain()) > width {
        t.state.clear();
    }
    if let Some(over) = w(&t.plain()).checked_sub(width).filter(|&o| o > 0) {
        let label = t.room.strip_prefix('@')?;
        let room_for = w(label).checked_sub(over + w("…"))?;
        let mut kept = String::new();
        let mut used = 0;
        for c in label.chars() {
            let cw = w(c.encode_utf8(&mut [0; 4]));
            if used + cw > room_for {
                break;
            }
            used += cw;
            kept.push(c);
        }
        t.room = format!("@{}…", kept.trim_end());
    }
    let plain = t.plain();
    let pad = " ".repeat(width.checked_sub(w(&plain))?);
    Some(Shown {
        plain: plain + &pad,
        styled: t.styled() + &pad,
    })
}

/// The [`LivePrompt`] as rustyline sees it, measured the way it measures.
struct Showing<'a> {
    live: &'a LivePrompt,
    gcm: GraphemeClusterMode,
}

impl Prompt for Showing<'_> {
    fn raw(&self) -> &str {
        &self.live.shown(self.gcm).plain
    }

    fn styled(&self) -> &str {
        &self.live.shown(self.gcm).styled
    }
}

/// From the app to the line editor (terminal mode only).
#[derive(Debug)]
pub enum UiRequest {
    /// Read the next line with this prompt, which the app may change meanwhile.
    Ready(Arc<LivePrompt>),
    /// Read a password without echo; answer `None` if the user cancelled (Ctrl-C/D).
    Password {
        prompt: String,
        reply: Sender<Option<String>>,
    },
    /// Read one line with echo (an invite code); `None` if the user cancelled.
    Ask {
        prompt: String,
        reply: Sender<Option<String>>,
    },
    /// The app is done; stop reading.
    Quit,
}

/// How long [`Printer::flush`] waits for the printer thread. Default is 500 ms: far more
/// than printing takes; it is only reached when the editor holds a message until its
/// next `readline`, which the prompt about to be sent starts.
pub const FLUSH_WAIT: Duration = Duration::from_millis(500);

/// At exit, how long the printer thread may take to print what is left. Default is 1 s.
pub const EXIT_FLUSH_WAIT: Duration = Duration::from_secs(1);

/// Where lines of output go.
pub struct Printer {
    sink: Sink,
}

enum Sink {
    Stdout,
    /// To the printer thread, which owns the editor's `ExternalPrinter`.
    Editor(Sender<Print>),
}

enum Print {
    Line(String),
    /// Answered once every line before it was handed to the editor.
    Flush(Sender<()>),
}

impl Printer {
    pub fn stdout() -> Printer {
        Printer { sink: Sink::Stdout }
    }

    /// Print one event (may contain newlines). Never blocks on the terminal's editor.
    pub fn line(&mut self, text: &str) {
        if let Sink::Editor(tx) = &self.sink {
            if tx.send(Print::Line(text.to_owned())).is_ok() {
                return;
            }
        }
        print_stdout(text);
    }

    /// Wait (at most [`FLUSH_WAIT`]) until every line printed so far reached the editor,
    /// so that it shows before the prompt or password request sent next.
    pub fn flush(&mut self) {
        if let Sink::Editor(tx) = &self.sink {
            let (done_tx, done) = crossbeam_channel::bounded(1);
            if tx.send(Print::Flush(done_tx)).is_ok() {
                let _ = done.recv_timeout(FLUSH_WAIT);
            }
        }
    }
}

fn print_stdout(text: &str) {
    let mut out = io::stdout().lock();
    // A closed stdout (a script's reader went away) is not worth a panic.
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// The printer thread: hands each line to the editor; waiting there is its job alone.
fn run_printer(mut editor: impl ExternalPrinter, jobs: Receiver<Print>) {
    for job in jobs {
        match job {
            Print::Line(text) => {
                // The editor adds the newline itself while a line is being edited, but
                // not when it writes straight through between two readline calls.
                if editor.print(format!("{text}\n")).is_err() {
                    print_stdout(&text);
                }
            }
            Print::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// rustyline helper: completes command names and room ids, and masks passwords.
pub struct CliHelper {
    masking: bool,
    /// Room ids and names, and the other users of DMs, to offer after `/join`,
    /// `/switch`, `/leave`, `/who`, `/dm`, `/msg`; kept up to date by the app.
    rooms: Arc<Mutex<Vec<String>>>,
    /// Where [`Input::Typing`] goes; set while a line for the chat is read (not a
    /// password or an invite code).
    typing: Option<Sender<Input>>,
    /// The line as last seen by the hinter, to tell edits from mere redraws (an
    /// incoming message redraws the line too).
    last_line: RefCell<String>,
    last_signal: Cell<Option<Instant>>,
}

impl CliHelper {
    /// The line being composed is now `line`.
    fn composing(&self, line: &str) {
        let Some(tx) = &self.typing else { return };
        if self.masking || *self.last_line.borrow() == line {
            return;
        }
        line.clone_into(&mut self.last_line.borrow_mut());
        let message = !line.trim().is_empty() && (!line.starts_with('/') || line.starts_with("//"));
        let now = Instant::now();
        let quiet = self
            .last_signal
            .get()
            .is_none_or(|t| now.duration_since(t) >= TYPING_SIGNAL);
        if message && quiet {
            self.last_signal.set(Some(now));
            // Never block the editor: a full channel just drops the signal.
            let _ = tx.try_send(Input::Typing);
        }
    }
}

impl Completer for CliHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        if self.masking || !line.starts_with('/') {
            return Ok((0, Vec::new()));
        }
        let before = &line[..pos];
        match before.split_once(' ') {
            None => Ok((
                0,
                commands::NAMES
                    .iter()
                    .filter(|n| n.starts_with(before))
                    .map(|n| format!("{n} "))
                    .collect(),
            )),
            Some((cmd, arg))
                if ["/join", "/switch", "/leave", "/who", "/dm", "/msg"].contains(&cmd) =>
            {
                // A user name is one word; a room name may have spaces, and is offered
                // in quotes then (`/switch "team room"`), matched with or without them.
                let user_only = cmd == "/dm" || cmd == "/msg";
                if arg.contains(' ') && (user_only || !arg.starts_with('"')) {
                    return Ok((0, Vec::new()));
                }
                let rooms = self.rooms.lock().map(|r| r.clone()).unwrap_or_default();
                let found = rooms
                    .into_iter()
                    .filter_map(|r| {
                        if !r.contains(' ') {
                            return r.starts_with(arg).then_some(r);
                        }
                        let quoted = format!("\"{r}\"");
                        let ok = !user_only && (quoted.starts_with(arg) || r.starts_with(arg));
                        ok.then_some(quoted)
                    })
                    .collect();
                Ok((cmd.len() + 1, found))
            }
            Some(_) => Ok((0, Vec::new())),
        }
    }
}

impl Hinter for CliHelper {
    type Hint = String;

    /// Never a hint; called after every edit, it is how typing is noticed.
    fn hint(&self, line: &str, _pos: usize, _ctx: &Context<'_>) -> Option<String> {
        self.composing(line);
        None
    }
}

impl Validator for CliHelper {}

impl Highlighter for CliHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.masking {
            // Same width, nothing readable: the cursor stays where the editor thinks.
            Cow::Owned(" ".repeat(line.chars().count()))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        self.masking && kind != CmdKind::MoveCursor
    }
}

impl Helper for CliHelper {}

/// The line editor for terminal mode.
pub struct Terminal {
    editor: Editor<CliHelper, DefaultHistory>,
    /// Disconnected once the printer thread has printed everything and ended.
    printed: Option<Receiver<()>>,
    /// How the editor measures text on this terminal, to fit a changed prompt.
    gcm: GraphemeClusterMode,
}

impl Terminal {
    pub fn new(rooms: Arc<Mutex<Vec<String>>>) -> rustyline::Result<Terminal> {
        let config = Config::builder()
            .auto_add_history(false)
            .max_history_size(1000)?
            .build();
        let gcm = config.grapheme_cluster_mode();
        let mut editor = Editor::with_config(config)?;
        editor.set_helper(Some(CliHelper {
            masking: false,
            rooms,
            typing: None,
            last_line: RefCell::new(String::new()),
            last_signal: Cell::new(None),
        }));
        Ok(Terminal {
            editor,
            printed: None,
            gcm,
        })
    }

    /// A printer that keeps the typed line intact, or plain stdout where the terminal
    /// cannot do that (output not a terminal, `TERM=dumb`).
    pub fn printer(&mut self) -> Printer {
        let Ok(p) = self.editor.create_external_printer() else {
            return Printer::stdout();
        };
        let (tx, jobs) = crossbeam_channel::unbounded();
        let (alive, printed) = crossbeam_channel::bounded::<()>(0);
        let started = thread::Builder::new()
            .name("parley-print".into())
            .spawn(move || {
                run_printer(p, jobs);
                drop(alive);
            });
        match started {
            Ok(_) => {
                self.printed = Some(printed);
                Printer {
                    sink: Sink::Editor(tx),
                }
            }
            Err(_) => Printer::stdout(),
        }
    }

    fn read_password(&mut self, prompt: &str) -> Option<String> {
        if let Some(h) = self.editor.helper_mut() {
            h.masking = true;
        }
        // The mask is drawn by the highlighter, which rustyline only calls with colour on.
        self.editor.set_color_mode(ColorMode::Forced);
        let r = self.editor.readline(prompt);
        self.editor.set_color_mode(ColorMode::Enabled);
        if let Some(h) = self.editor.helper_mut() {
            h.masking = false;
        }
        r.ok()
    }

    /// Run the editor until the app says [`UiRequest::Quit`] (or goes away), then let the
    /// printer thread finish (at most [`EXIT_FLUSH_WAIT`]).
    pub fn run(mut self, lines: Sender<Input>, requests: Receiver<UiRequest>) {
        self.read_lines(lines, requests);
        if let Some(printed) = self.printed.take() {
            // The app's printer goes when the app thread ends, just after its `Quit`.
            let _ = printed.recv_timeout(EXIT_FLUSH_WAIT);
        }
    }

    fn read_lines(&mut self, lines: Sender<Input>, requests: Receiver<UiRequest>) {
        loop {
            // Wait for the app's turn to end: it may ask for passwords meanwhile.
            let prompt = loop {
                match requests.recv() {
                    Ok(UiRequest::Ready(p)) => break p,
                    Ok(UiRequest::Password { prompt, reply }) => {
                        let pw = self.read_password(&prompt);
                        let _ = reply.send(pw);
                    }
                    Ok(UiRequest::Ask { prompt, reply }) => {
                        let _ = reply.send(self.editor.readline(&prompt).ok());
                    }
                    Ok(UiRequest::Quit) | Err(_) => return,
                }
            };
            if let Some(h) = self.editor.helper_mut() {
                h.typing = Some(lines.clone());
                h.last_line.borrow_mut().clear();
            }
            let shown = Showing {
                live: &prompt,
                gcm: self.gcm,
            };
            let read = self.editor.readline(&shown);
            if let Some(h) = self.editor.helper_mut() {
                h.typing = None;
            }
            let input = match read {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = self.editor.add_history_entry(line.as_str());
                    }
                    Input::Line(line)
                }
                // Ctrl-C drops the line being typed, as in a shell.
                Err(ReadlineError::Interrupted) => Input::Line(String::new()),
                Err(_) => Input::Eof,
            };
            if lines.send(input).is_err() {
                return;
            }
        }
    }
}

/// Non-terminal input: every line of `reader` becomes an [`Input::Line`], then
/// [`Input::Eof`]. Invalid UTF-8 is replaced, not fatal.
pub fn read_lines<R: BufRead>(mut reader: R, lines: Sender<Input>) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']).to_owned();
                if lines.send(Input::Line(line)).is_err() {
                    return;
                }
            }
        }
    }
    let _ = lines.send(Input::Eof);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An editor that takes a message only when the test lets it, as rustyline's does
    /// while a line ends with its one slot full.
    struct Held {
        go: Receiver<()>,
        got: Sender<String>,
    }

    impl ExternalPrinter for Held {
        fn print(&mut self, msg: String) -> rustyline::Result<()> {
            let _ = self.go.recv();
            let _ = self.got.send(msg);
            Ok(())
        }
    }

    #[test]
    fn printing_never_waits_for_the_editor_and_keeps_the_order() {
        let (go_tx, go) = crossbeam_channel::unbounded();
        let (got, printed) = crossbeam_channel::unbounded();
        let (tx, jobs) = crossbeam_channel::unbounded();
        let worker = std::thread::spawn(move || run_printer(Held { go, got }, jobs));
        let mut p = Printer {
            sink: Sink::Editor(tx),
        };
        let start = Instant::now();
        for i in 0..5 {
            p.line(&format!("line {i}"));
        }
        assert!(start.elapsed() < FLUSH_WAIT, "printing did not wait");
        // A flush gives up after its bound when the editor holds on.
        let start = Instant::now();
        p.flush();
        assert!(start.elapsed() >= FLUSH_WAIT);
        for _ in 0..5 {
            go_tx.send(()).expect("release");
        }
        let got: Vec<String> = (0..5)
            .map(|_| {
                printed
                    .recv_timeout(Duration::from_secs(5))
                    .expect("printed")
            })
            .collect();
        let want: Vec<String> = (0..5).map(|i| format!("line {i}\n")).collect();
        assert_eq!(got, want);
        // Once the editor takes them, a flush returns as soon as they are handed over.
        go_tx.send(()).expect("release");
        p.line("last");
        let start = Instant::now();
        p.flush();
        assert!(start.elapsed() < FLUSH_WAIT);
        drop(p);
        worker
            .join()
            .expect("the printer thread ends with its printer");
    }

    #[test]
    fn room_names_with_spaces_complete_in_quotes() {
        let h = CliHelper {
            masking: false,
            rooms: Arc::new(Mutex::new(vec![
                "k3v9x0a2qp".into(),
                "team room".into(),
                "teal".into(),
            ])),
            typing: None,
            last_line: RefCell::new(String::new()),
            last_signal: Cell::new(None),
        };
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let complete = |line: &str| h.complete(line, line.len(), &ctx).expect("completes");
        let (at, mut found) = complete("/switch te");
        found.sort();
        assert_eq!(
            (at, found),
            (8, vec!["\"team room\"".to_owned(), "teal".to_owned()])
        );
        assert_eq!(complete("/join \"team r").1, ["\"team room\""]);
        assert!(
            complete("/join team r").1.is_empty(),
            "unquoted spaces: no guess"
        );
        assert!(complete("/dm te").1.iter().all(|c| !c.contains(' ')));
    }

    fn prompt(user: &str, room: &str, state: &str) -> PromptText {
        PromptText {
            user: user.into(),
            room: room.into(),
            state: state.into(),
            colour: false,
        }
    }

    /// What the editor draws now, and its width as the editor measures it.
    fn drawn(p: &LivePrompt) -> (String, usize) {
        let gcm = GraphemeClusterMode::WcWidth;
        let s = Showing { live: p, gcm };
        (s.raw().to_owned(), usize::from(gcm.width(s.raw())))
    }

    /// `text` and `n` spaces.
    fn padded(text: &str, n: usize) -> String {
        format!("{text}{}", " ".repeat(n))
    }

    #[test]
    fn a_changed_prompt_keeps_the_width_the_editor_measured() {
        let p = LivePrompt::new(prompt("al", "@lobby", " (offline)"));
        assert_eq!(drawn(&p), ("al@lobby (offline)> ".into(), 20));
        // Back online: padded.
        p.change(prompt("al", "@lobby", ""));
        assert_eq!(drawn(&p), (padded("al@lobby> ", 10), 20));
        // Moved to a room with a longer name: whole while it fits.
        p.change(prompt("al", "@a much longer", ""));
        assert_eq!(drawn(&p), (padded("al@a much longer> ", 2), 20));
        // Longer than that: the label is cut short (and no blank before the `…`).
        p.change(prompt("al", "@a much longer name", ""));
        assert_eq!(drawn(&p), (padded("al@a much longer…> ", 1), 20));
        // Offline again: ` (offline)` shows where it fits, and is left out where not.
        p.change(prompt("al", "@den", " (offline)"));
        assert_eq!(drawn(&p), (padded("al@den (offline)> ", 2), 20));
        p.change(prompt("al", "@a much longer name", " (offline)"));
        assert_eq!(drawn(&p), (padded("al@a much longer…> ", 1), 20));
        // No room at all.
        p.change(prompt("al", "", ""));
        assert_eq!(drawn(&p), (padded("al> ", 16), 20));
        assert_eq!(p.text(), &prompt("al", "", ""));
    }

    #[test]
    fn wide_characters_are_measured_as_the_editor_does() {
        let p = LivePrompt::new(prompt("al", "@lobbyx", ""));
        // Two columns each: two fit with the `…`; a third would pass the width.
        p.change(prompt("al", "@会議室です", ""));
        assert_eq!(drawn(&p), (padded("al@会議…> ", 1), 11));
        p.change(prompt("al", "@会議", ""));
        assert_eq!(drawn(&p), (padded("al@会議> ", 2), 11));
    }

    #[test]
    fn a_prompt_that_cannot_fit_waits_and_changes_are_bounded() {
        let p = LivePrompt::new(prompt("al", "", ""));
        // A room where there was none: no column for it; the prompt stays.
        p.change(prompt("al", "@den", ""));
        assert_eq!(drawn(&p).0, "al> ");
        assert_eq!(p.text(), &prompt("al", "@den", ""));
        // The same text again is no change; after the bound, changes wait.
        let p = LivePrompt::new(prompt("al", "@lobby", ""));
        for i in 0..MAX_PROMPT_CHANGES * 2 {
            let room = if i % 2 == 0 { "@a" } else { "@b" };
            p.change(prompt("al", room, ""));
            p.change(prompt("al", room, ""));
        }
        assert_eq!(p.first.versions().count(), MAX_PROMPT_CHANGES + 1);
        assert_eq!(drawn(&p).0, padded("al@b> ", 4));
    }

    #[test]
    fn the_styled_prompt_is_padded_alike() {
        let mut text = prompt("al", "@lobby", "");
        text.colour = true;
        let p = LivePrompt::new(text.clone());
        text.room = "@den".into();
        p.change(text);
        let s = Showing {
            live: &p,
            gcm: GraphemeClusterMode::WcWidth,
        };
        assert_eq!(
            s.styled(),
            "\x1b[1mal\x1b[0m\x1b[36m@den\x1b[0m\x1b[2m\x1b[0m>   "
        );
    }

    #[test]
    fn lines_then_eof() {
        let (tx, rx) = crossbeam_channel::unbounded();
        read_lines(&b"one\r\ntwo\n\nthree"[..], tx);
        let got: Vec<String> = rx
            .iter()
            .map(|i| match i {
                Input::Line(l) => l,
                Input::Typing => "<typing>".to_owned(),
                Input::Eof => "<eof>".to_owned(),
            })
            .collect();
        assert_eq!(got, ["one", "two", "", "three", "<eof>"]);
    }

    #[test]
    fn edits_of_a_message_signal_typing_redraws_and_commands_do_not() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut h = CliHelper {
            masking: false,
            rooms: Arc::new(Mutex::new(Vec::new())),
            typing: Some(tx),
            last_line: RefCell::new(String::new()),
            last_signal: Cell::new(None),
        };
        let count = |rx: &Receiver<Input>| rx.try_iter().count();
        h.composing("");
        h.composing("/jo");
        h.composing("   ");
        assert_eq!(count(&rx), 0, "empty lines and commands are not typing");
        h.composing("h");
        assert_eq!(count(&rx), 1);
        // More keystrokes within the interval, and redraws of the same line: nothing.
        h.composing("hi");
        h.composing("hi");
        assert_eq!(count(&rx), 0);
        h.last_signal.set(Instant::now().checked_sub(TYPING_SIGNAL));
        h.composing("hi");
        assert_eq!(count(&rx), 0, "a redraw is no keystroke");
        h.composing("hi!");
        assert_eq!(count(&rx), 1);
        h.last_signal.set(None);
        h.composing("//slash");
        assert_eq!(count(&rx), 1, "//text is a message");
        // Passwords are never reported.
        h.last_signal.set(None);
        h.masking = true;
        h.composing("secret");
        assert_eq!(count(&rx), 0);
    }
}
