//! The app thread: owns the session (token, rooms, current room, timelines, unsent
//! messages), carries out commands and renders what the connection reports.
//!
//! Everything that changes client state happens on this one thread, in order: lines
//! typed, frames received, timers. REST calls are made inline; they are short, and frames
//! arriving meanwhile wait in the channel and are rendered right after, so output never
//! interleaves mid-line.
//!
//! The work is split by subject: `account` (register, login, logout, password),
//! `rooms` (room and user commands over REST), `manage` (running a room and the
//! server: bans, renames, deletion, ownership, invitations, `/admin`), `direct`
//! (direct messages, edits and deletions, blocks), `talk` (read markers, unread counts,
//! typing, mentions) and `live` (sending, and what the WebSocket reports).

mod account;
mod direct;
mod live;
mod manage;
mod rooms;
mod talk;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::api::{Api, ApiError, Invite};
use crate::commands::{self, Command, Line};
use crate::conn::{Connection, NetEvent};
use crate::outbox::Outbox;
use crate::protocol::{Entry, Room};
use crate::render::{clean, Style};
use crate::timeline::Timeline;
use crate::ui::{Input, LivePrompt, Printer, PromptText, UiRequest};

/// At end of a script, how long to wait for acknowledgements. Default is 30 s: room for a
/// few reconnect attempts at full back-off, bounded so a dead server ends the script.
pub const EOF_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// After `/quit` on a terminal, how long to wait for what was just sent. Default is 2 s.
pub const QUIT_GRACE: Duration = Duration::from_secs(2);

/// Longest sleep of the app loop with nothing to do. Default is 100 ms; timers that are
/// due sooner (catch-up timeouts, paced sends) wake it on time.
const TICK: Duration = Duration::from_millis(100);

/// Entries of context shown when joining a room. The server sends the last 50 after a
/// join; this keeps a join made before the connection is up showing the same.
pub const JOIN_CONTEXT: u64 = 50;

/// Where passwords come from.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    /// `--password-stdin` or `PARLEY_PASSWORD`: the same password for every login.
    Given(String),
    /// Ask on the terminal, without echo.
    Ask,
    /// Not a terminal and none given.
    Missing,
}

/// What the app needs from `main`.
pub struct Setup {
    pub api: Api,
    pub style: Style,
    pub printer: Printer,
    pub password: PasswordSource,
    /// `--user`: log in at start.
    pub user: Option<String>,
    /// `--invite-code`: sent with `/register` when the command names none.
    pub invite_code: Option<String>,
    /// `Some` on a terminal: the line editor to hand prompts and password requests to.
    pub ui: Option<Sender<UiRequest>>,
    /// Room ids and names for the editor's completion.
    pub completions: Arc<Mutex<Vec<String>>>,
}

struct Session {
    user: String,
    token: String,
    conn: Option<Connection>,
    online: bool,
    ever_connected: bool,
    /// Told the user their message is queued during this outage.
    told_queued: bool,
    epoch: Option<String>,
    /// Rooms the user is in, by id.
    rooms: BTreeMap<String, Room>,
    /// Pending invitations, by room id: from `GET /api/v1/me` at login, then `invite`
    /// frames; a join uses one.
    invites: BTreeMap<String, Invite>,
    /// A server administrator (`GET /api/v1/me`).
    admin: bool,
    current: Option<String>,
    timeline: Timeline,
    outbox: Outbox,
    /// Own messages seen, read markers, typing throttles.
    talk: crate::talk::Talk,
}

#[derive(PartialEq)]
enum Flow {
    Continue,
    Quit,
}

pub struct App {
    api: Api,
    style: Style,
    out: Printer,
    password: PasswordSource,
    start_user: Option<String>,
    invite_code: Option<String>,
    ui: Option<Sender<UiRequest>>,
    completions: Arc<Mutex<Vec<String>>>,
    events_tx: Sender<(u64, NetEvent)>,
    events: Receiver<(u64, NetEvent)>,
    /// Tag of the current connection; events of older ones are ignored.
    tag: u64,
    session: Option<Session>,
    /// Names of rooms seen in listings, for labels and name lookups.
    room_names: HashMap<String, String>,
    /// Set once input ended or `/quit`: exit when the outbox is empty or at this moment.
    closing: Option<Instant>,
    exit_code: i32,
    /// Something the user asked for failed (an error line was printed, other than the
    /// connection's own ups and downs): a script then exits with 1.
    failed: bool,
    /// The prompt of the line the editor is reading (terminal only), kept current while
    /// the line is typed: see [`App::print`].
    prompt: Option<Arc<LivePrompt>>,
}

impl App {
    pub fn new(setup: Setup) -> App {
        // Bounded: if rendering falls behind, the connection thread waits, the server
        // notices a slow reader and, past its limit, drops us; we reconnect and sync.
        let (events_tx, events) = crossbeam_channel::bounded(4096);
        App {
            api: setup.api,
            style: setup.style,
            out: setup.printer,
            password: setup.password,
            start_user: setup.user,
            invite_code: setup.invite_code,
            ui: setup.ui,
            completions: setup.completions,
            events_tx,
            events,
            tag: 0,
            session: None,
            room_names: HashMap::new(),
            closing: None,
            exit_code: 0,
            failed: false,
            prompt: None,
        }
    }

    /// Run until `/quit` or end of input; returns the exit status.
    pub fn run(mut self, input: Receiver<Input>) -> i32 {
        let mut input = input;
        if let Some(user) = self.start_user.take() {
            self.login(&user, false);
        } else if self.ui.is_some() {
            self.notice(&format!(
                "server {}; /register NAME or /login NAME to start, /help for more",
                self.api.endpoint()
            ));
        }
        self.ready();
        loop {
            select! {
                recv(input) -> msg => match msg {
                    Ok(Input::Line(line)) => {
                        // The editor is done with the prompt; `ready` makes the next.
                        self.prompt = None;
                        if self.handle_line(&line) == Flow::Quit {
                            self.begin_closing(QUIT_GRACE);
                            input = crossbeam_channel::never();
                        } else {
                            self.ready();
                        }
                    }
                    Ok(Input::Typing) => self.typed(),
                    Ok(Input::Eof) | Err(_) => {
                        self.prompt = None;
                        let grace = if self.ui.is_some() { QUIT_GRACE } else { EOF_ACK_TIMEOUT };
                        self.begin_closing(grace);
                        input = crossbeam_channel::never();
                    }
                },
                recv(self.events) -> ev => {
                    if let Ok((tag, ev)) = ev {
                        if tag == self.tag {
                            self.on_net(ev);
                        }
                    }
                    // Whatever the event changed shows at the next redraw, even if it
                    // printed nothing after the change.
                    self.refresh_prompt();
                }
                default(self.next_wake()) => {}
            }
            self.tick();
            if let Some(deadline) = self.closing {
                let pending = self.session.as_ref().map_or(0, |s| s.outbox.len());
                let can_deliver = self.session.as_ref().is_some_and(|s| s.conn.is_some());
                if pending == 0 {
                    break;
                }
                if Instant::now() >= deadline || !can_deliver {
                    self.error(&format!(
                        "{pending} message(s) not acknowledged by the server; they may not have been delivered"
                    ));
                    self.exit_code = 1;
                    break;
                }
            }
        }
        // What was read goes to the server before the connection closes.
        self.flush_reads(true);
        if let Some(s) = self.session.take() {
            if let Some(c) = s.conn {
                c.shutdown();
            }
        }
        if let Some(ui) = &self.ui {
            let _ = ui.send(UiRequest::Quit);
        }
        // A script whose login, command or message failed says so in its exit status;
        // on a terminal the person saw the error and chose to quit.
        if self.ui.is_none() && self.failed && self.exit_code == 0 {
            self.exit_code = 1;
        }
        self.exit_code
    }

    /// How long the loop may sleep before a timer needs it.
    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        let soonest = self.session.as_ref().and_then(|s| {
            [
                s.timeline.next_deadline(),
                s.outbox.next_due(),
                s.talk.next_read_due(),
            ]
            .into_iter()
            .flatten()
            .min()
        });
        soonest.map_or(TICK, |t| {
            t.saturating_duration_since(now)
                .clamp(Duration::from_millis(1), TICK)
        })
    }

    fn begin_closing(&mut self, grace: Duration) {
        if self.closing.is_none() {
            self.closing = Some(Instant::now() + grace);
        }
    }

    // ----- output -------------------------------------------------------------------

    /// Print one event. Every line printed while a line is typed redraws the prompt
    /// below it, so the prompt is brought up to date first: a kick, a ban, a deleted
    /// room or a reconnect changes it, and the notice printed after the change shows it
    /// at once, the typed line intact.
    fn print(&mut self, line: &str) {
        self.refresh_prompt();
        self.out.line(line);
    }

    fn notice(&mut self, text: &str) {
        let line = self.style.notice(text);
        self.print(&line);
    }

    /// An error: something asked for did not happen. A script exits with 1 after one.
    fn error(&mut self, text: &str) {
        self.failed = true;
        self.warn(text);
    }

    /// Shown like an error, but nothing asked for failed (yet): the connection dropped
    /// and is being re-established, entries were missed. It does not change the exit
    /// status by itself; what stays undelivered does.
    fn warn(&mut self, text: &str) {
        let line = self.style.error(text);
        self.print(&line);
    }

    fn print_entry(&mut self, e: &Entry) {
        let label = self.label(&e.room);
        let line = self.style.entry(&label, e);
        self.print(&line);
    }

    /// How a room is shown: its name, or `name#id` when two of your rooms share it; a
    /// DM as `@` and the other user's name.
    fn label(&self, id: &str) -> String {
        if let Some(peer) = self
            .session
            .as_ref()
            .and_then(|s| s.rooms.get(id).and_then(|r| r.dm_peer(&s.user)))
        {
            return clean(&format!("@{peer}"));
        }
        let name = self
            .session
            .as_ref()
            .and_then(|s| s.rooms.get(id))
            .map(|r| r.name.clone())
            .or_else(|| self.room_names.get(id).cloned());
        let Some(name) = name else {
            return clean(id);
        };
        let shared = self.session.as_ref().is_some_and(|s| {
            s.rooms
                .values()
                .any(|r| r.id != id && r.name.eq_ignore_ascii_case(&name))
        });
        if shared {
            clean(&format!("{name}#{id}"))
        } else {
            clean(&name)
        }
    }

    /// What the prompt says now: `user@room> `, ` (offline)` while the connection is
    /// down (after it was first up).
    fn prompt_text(&self) -> PromptText {
        let (user, room, state) = match &self.session {
            None => ("parley".to_owned(), String::new(), ""),
            Some(s) => {
                let room = s
                    .current
                    .as_ref()
                    .map(|id| format!("@{}", self.label(id)))
                    .unwrap_or_default();
                let state = if s.online || !s.ever_connected {
                    ""
                } else {
                    " (offline)"
                };
                (s.user.clone(), room, state)
            }
        };
        PromptText {
            user,
            room,
            state: state.to_owned(),
            colour: self.style.colour,
        }
    }

    /// Tell the editor's prompt, if a line is being read, what it says now.
    fn refresh_prompt(&self) {
        if let Some(p) = &self.prompt {
            p.change(self.prompt_text());
        }
    }

    /// Hand the editor its next prompt.
    fn ready(&mut self) {
        let Some(ui) = &self.ui else { return };
        if let Ok(mut c) = self.completions.lock() {
            c.clear();
            if let Some(s) = &self.session {
                for r in s.rooms.values() {
                    c.push(r.id.clone());
                    match r.dm_peer(&s.user) {
                        Some(peer) => c.push(peer),
                        None => c.push(r.name.clone()),
                    }
                }
            }
        }
        // What this turn printed comes before the prompt.
        self.out.flush();
        let prompt = Arc::new(LivePrompt::new(self.prompt_text()));
        self.prompt = Some(prompt.clone());
        let _ = ui.send(UiRequest::Ready(prompt));
    }

    // ----- input --------------------------------------------------------------------

    fn handle_line(&mut self, line: &str) -> Flow {
        match commands::parse(line) {
            Line::Empty => Flow::Continue,
            Line::Usage(u) => {
                self.error(&format!("usage: {u}"));
                Flow::Continue
            }
            Line::Message(text) => {
                self.send_text(text, false);
                Flow::Continue
            }
            Line::Command(c) => self.command(c),
        }
    }

    fn command(&mut self, c: Command) -> Flow {
        match c {
            Command::Quit => return Flow::Quit,
            Command::Help => {
                let text = commands::help_text();
                let line = self
                    .style
                    .listing("help", &text.lines().map(str::to_owned).collect::<Vec<_>>());
                self.print(&line);
            }
            Command::Register(name, code) => self.register(&name, code),
            Command::Login(name) => self.login(&name, true),
            Command::Logout => self.logout(),
            Command::Create(name) => self.create(&name),
            Command::Join(arg) => self.join(&arg),
            Command::Leave(arg) => self.leave(arg.as_deref()),
            Command::Switch(arg) => self.switch(&arg),
            Command::Rooms => self.rooms(),
            Command::Users => self.users(),
            Command::Who(arg) => self.who(arg.as_deref()),
            Command::History(n) => self.history(n),
            Command::Moderate(text) => self.moderate(text),
            Command::ShowTopic => self.show_topic(),
            Command::ClearTopic => self.clear_topic(),
            Command::Bans => self.bans(),
            Command::Rename(name) => self.rename(&name),
            Command::DeleteRoom(arg) => self.delete_room(arg.as_deref()),
            Command::Owner(user) => self.transfer(&user),
            Command::Password => self.change_password(),
            Command::Invites => self.invites(),
            Command::Admin(a) => self.admin(a),
            Command::Msg(user, text) => self.msg(&user, &text),
            Command::Dm(user) => self.dm(&user),
            Command::Dms => self.dms(),
            Command::Edit(seq, text) => self.edit(seq, &text),
            Command::Delete(seq) => self.delete(seq),
            Command::Block(user) => self.block(&user, true),
            Command::Unblock(user) => self.block(&user, false),
            Command::Blocks => self.blocks(),
            Command::Server(text) => self.send_text(text, true),
        }
        Flow::Continue
    }

    fn ask_password(&mut self, prompt: &str) -> Option<String> {
        match &self.password {
            PasswordSource::Given(p) => Some(p.clone()),
            PasswordSource::Missing => {
                self.error("no password: set PARLEY_PASSWORD or pass --password-stdin");
                None
            }
            PasswordSource::Ask => {
                self.out.flush();
                let ui = self.ui.as_ref()?;
                let (tx, rx) = crossbeam_channel::bounded(1);
                ui.send(UiRequest::Password {
                    prompt: prompt.to_owned(),
                    reply: tx,
                })
                .ok()?;
                let pw = rx.recv().ok().flatten();
                if pw.is_none() {
                    self.notice("cancelled");
                }
                pw
            }
        }
    }

    /// A line typed with echo (an invite code); `None` off a terminal or if cancelled.
    fn ask_line(&mut self, prompt: &str) -> Option<String> {
        self.out.flush();
        let ui = self.ui.as_ref()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        ui.send(UiRequest::Ask {
            prompt: prompt.to_owned(),
            reply: tx,
        })
        .ok()?;
        rx.recv().ok().flatten()
    }

    /// The session, or an error telling the user to log in.
    fn need_session(&mut self) -> Option<&mut Session> {
        if self.session.is_none() {
            self.error("not logged in: /login NAME or /register NAME first");
            return None;
        }
        self.session.as_mut()
    }

    fn token(&mut self) -> Option<String> {
        self.need_session().map(|s| s.token.clone())
    }

    /// Report a REST failure; a 401 means the session is gone.
    fn api_error(&mut self, what: &str, e: ApiError) {
        self.error(&format!("{what}: {e}"));
        if e.code() == Some("unauthorized") && self.session.is_some() {
            self.end_session("the server no longer accepts this session");
        }
    }
}

/// The room to make current when none is chosen: the first by name, rooms before DMs.
fn first_room(rooms: &BTreeMap<String, Room>) -> Option<String> {
    rooms
        .values()
        .min_by(|a, b| {
            a.is_dm()
                .cmp(&b.is_dm())
                .then(a.name.to_lowercase().cmp(&b.name.to_lowercase()))
                .then(a.id.cmp(&b.id))
        })
        .map(|r| r.id.clone())
}
