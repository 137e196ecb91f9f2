// sockchat in the browser: one WebSocket, the same JSON commands and
// events as the TCP door's JSON mode (docs/PROTOCOL.md). Every piece of
// text from the network is put on the page with textContent, never as
// HTML, so no message or nickname can inject markup or script.
"use strict";

const PRIVATE = "@private";
const HISTORY_STEP = 50;

const state = {
  socket: null,
  // The nickname asked for, and the one the server knows us by.
  nick: localStorage.getItem("sockchat.nick") || "",
  me: "",
  current: null,
  rooms: new Map(), // name -> { messages: [], ids: Set, unread: 0, members: [], count: 0 }
  joined: [],
  retryDelay: 1000,
  retryTimer: null,
  loadingOlder: false,
};

const $ = (id) => document.getElementById(id);

function room(name) {
  if (!state.rooms.has(name)) {
    state.rooms.set(name, { messages: [], ids: new Set(), unread: 0, members: [], count: 0 });
  }
  return state.rooms.get(name);
}

// ---- connection -------------------------------------------------------

function connect() {
  setState("connecting", "connecting…");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  state.socket = socket;
  socket.addEventListener("open", () => {
    state.retryDelay = 1000;
    setState("online", "online");
    if (state.nick) send({ type: "nick", nick: state.nick });
    // Rejoin where we were; the server replays what we missed.
    for (const name of state.joined) {
      if (name !== "lobby") send({ type: "join", room: name });
    }
  });
  socket.addEventListener("message", (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    handle(data);
  });
  socket.addEventListener("close", () => {
    if (state.socket !== socket) return;
    const seconds = Math.round(state.retryDelay / 1000);
    setState("offline", `offline, retrying in ${seconds} s`);
    state.retryTimer = setTimeout(connect, state.retryDelay);
    state.retryDelay = Math.min(state.retryDelay * 2, 30000);
  });
}

function send(command) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify(command));
    return true;
  }
  notice(state.current, "not connected; try again in a moment", "error");
  return false;
}

function setState(kind, text) {
  const element = $("state");
  element.className = `state ${kind}`;
  element.textContent = text;
}

// ---- events -------------------------------------------------------------

function handle(event) {
  switch (event.type) {
    case "welcome":
      setMe(event.nick);
      if (!state.joined.includes(event.room)) state.joined.unshift(event.room);
      room(event.room).members = event.members;
      room(event.room).count = event.count;
      switchTo(state.current && state.joined.includes(state.current) ? state.current : event.room);
      break;
    case "message":
      addMessage(event, false);
      break;
    case "history":
      for (const message of event.messages) addMessage(message, true);
      state.loadingOlder = false;
      if (event.room === state.current) render();
      break;
    case "search_results":
      notice(state.current, `${event.messages.length} message(s) match "${event.query}":`, "system");
      for (const message of event.messages) {
        notice(state.current, `${message.from}: ${message.text}`, "system history");
      }
      break;
    case "private": {
      const mine = event.from === state.me;
      const said = event.notice ? `-${event.from}- ${event.text}` : `${event.from}: ${event.text}`;
      const line = mine ? `→ ${event.to}: ${event.text}` : said;
      push(PRIVATE, { kind: "private", time: event.time, from: mine ? "you" : event.from, text: line });
      break;
    }
    case "join":
      if (event.nick === state.me && !state.joined.includes(event.room)) {
        state.joined.push(event.room);
        switchTo(event.room);
      }
      notice(event.room, `${event.nick} joined #${event.room}`, "system");
      // Our own join is followed by a members event anyway.
      if (event.nick !== state.me) send({ type: "who", room: event.room });
      break;
    case "leave":
      if (event.nick === state.me && event.reason === "part") {
        state.joined = state.joined.filter((name) => name !== event.room);
        if (state.current === event.room) switchTo(state.joined[0] || null);
      } else {
        const how = { part: "left", quit: "left", lost: "lost the connection", dropped: "was disconnected" };
        const detail = event.detail ? ` (${event.detail})` : "";
        notice(event.room, `${event.nick} ${how[event.reason] || "left"}${detail}`, "system");
        send({ type: "who", room: event.room });
      }
      renderSidebar();
      break;
    case "nick":
      if (event.old === state.me) {
        setMe(event.new);
        state.nick = event.new;
        localStorage.setItem("sockchat.nick", event.new);
        // History came with the welcome, before the server took our
        // nickname: what we said in it is ours too.
        for (const [, shown] of state.rooms) {
          for (const entry of shown.messages) {
            if (entry.kind === "chat" && entry.from === event.new) entry.kind = "own";
          }
        }
        render();
      }
      {
        // The rooms we share with them; the current one if the member
        // lists have not caught up yet.
        let shared = state.joined.filter((name) => room(name).members.includes(event.old));
        if (shared.length === 0 && state.current) shared = [state.current];
        for (const name of shared) {
          room(name).members = room(name).members.map((nick) => (nick === event.old ? event.new : nick));
          notice(name, `${event.old} is now known as ${event.new}`, "system");
        }
      }
      renderSidebar();
      break;
    case "members":
      room(event.room).members = event.nicks;
      room(event.room).count = event.count;
      renderSidebar();
      break;
    case "rooms":
      notice(state.current, "rooms: " + event.rooms.map((r) => `#${r.name} (${r.members})`).join(" "), "system");
      break;
    case "notice":
      notice(state.current, event.text, "system");
      break;
    case "error":
      notice(state.current, event.message, "error");
      break;
    case "bye":
      notice(state.current, `disconnected: ${event.reason}`, "error");
      break;
  }
}

// The nickname the server knows us by, shown in the header.
function setMe(nick) {
  state.me = nick;
  $("me").textContent = nick;
}

function addMessage(message, fromHistory) {
  const target = room(message.room);
  if (target.ids.has(message.id)) return;
  target.ids.add(message.id);
  const entry = {
    id: message.id,
    kind: message.from === state.me ? "own" : "chat",
    time: message.time,
    from: message.from,
    text: message.action
      ? `* ${message.from} ${message.text}`
      : message.notice
        ? `-${message.from}- ${message.text}`
        : message.text,
    // Actions and notices carry their sender in their text.
    action: message.action || message.notice,
    history: fromHistory,
  };
  // History arrives oldest first and may be older than what is shown.
  target.messages.push(entry);
  target.messages.sort((a, b) => (a.id || 0) - (b.id || 0));
  if (!fromHistory && message.room !== state.current) {
    target.unread += 1;
    renderSidebar();
  }
  if (message.room === state.current && !fromHistory) render(true);
}

function push(name, entry) {
  const target = room(name);
  target.messages.push(entry);
  if (name !== state.current) {
    target.unread += 1;
    if (name === PRIVATE && !state.joined.includes(PRIVATE)) state.joined.push(PRIVATE);
    renderSidebar();
  } else {
    render(true);
  }
}

function notice(name, text, kind) {
  const where = name || state.current;
  if (!where) return;
  push(where, { kind, time: Date.now(), text });
}

// ---- rendering (textContent only) ----------------------------------------

function switchTo(name) {
  state.current = name;
  if (name) room(name).unread = 0;
  $("room-title").textContent = name ? (name === PRIVATE ? "private messages" : `#${name}`) : "";
  render(true);
  renderSidebar();
}

function render(stickToBottom) {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren();
  if (!state.current) return;
  for (const entry of room(state.current).messages) {
    const item = document.createElement("li");
    item.className = entry.kind + (entry.history ? " history" : "");
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = new Date(entry.time).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    item.append(time);
    if (entry.kind === "own") {
      const you = document.createElement("span");
      you.className = "you";
      you.textContent = "you";
      item.append(you);
    }
    if (entry.from && !entry.action && entry.kind !== "private") {
      const from = document.createElement("span");
      from.className = "from";
      from.textContent = entry.from;
      item.append(from);
    }
    item.append(document.createTextNode(entry.text));
    list.append(item);
  }
  if (stickToBottom || atBottom) list.scrollTop = list.scrollHeight;
}

function renderSidebar() {
  const rooms = $("room-list");
  rooms.replaceChildren();
  for (const name of state.joined) {
    const item = document.createElement("li");
    item.className = name === state.current ? "current" : "";
    item.dataset.room = name;
    const label = document.createElement("span");
    label.textContent = name === PRIVATE ? "private" : `#${name}`;
    item.append(label);
    const unread = room(name).unread;
    if (unread > 0) {
      const badge = document.createElement("span");
      badge.className = "unread";
      badge.textContent = String(unread);
      item.append(badge);
    }
    item.addEventListener("click", () => {
      if (name !== PRIVATE) send({ type: "join", room: name });
      switchTo(name);
      $("rooms").classList.remove("open");
    });
    rooms.append(item);
  }
  const members = $("member-list");
  members.replaceChildren();
  if (state.current && state.current !== PRIVATE) {
    const { members: nicks, count } = room(state.current);
    if (count > nicks.length) {
      // A big room: the server sends a count, not the list, and no joins.
      const item = document.createElement("li");
      item.className = "member-count";
      item.textContent = `${count} members (/who lists them)`;
      members.append(item);
    }
    for (const nick of nicks) {
      const item = document.createElement("li");
      item.textContent = nick;
      item.title = `message ${nick} privately`;
      item.addEventListener("click", () => {
        $("input").value = `/msg ${nick} `;
        $("input").focus();
      });
      members.append(item);
    }
  }
}

// ---- input ------------------------------------------------------------------

// Turns what was typed into a command, like the TCP text mode does.
function parse(text) {
  if (!text.startsWith("/") || text.startsWith("//")) {
    const say = text.startsWith("//") ? text.slice(1) : text;
    if (state.current === PRIVATE) return { error: "pick a room to talk in, or use /msg NICK TEXT" };
    return { type: "say", text: say, room: state.current || undefined };
  }
  const [name, ...words] = text.slice(1).split(/\s+/);
  const rest = text.slice(1 + name.length).trim();
  switch (name.toLowerCase()) {
    case "nick": return rest ? { type: "nick", nick: rest } : { error: "usage: /nick NAME" };
    case "join": return rest ? { type: "join", room: rest } : { error: "usage: /join ROOM" };
    case "part": return { type: "part", room: rest || state.current || undefined };
    case "msg": {
      const [to, ...body] = words;
      return to && body.length ? { type: "msg", to, text: rest.slice(to.length).trim() } : { error: "usage: /msg NICK TEXT" };
    }
    case "notice": {
      const [to, ...body] = words;
      return to && body.length ? { type: "notice", to, text: rest.slice(to.length).trim() } : { error: "usage: /notice #ROOM|NICK TEXT" };
    }
    case "me": return rest ? { type: "me", text: rest, room: state.current || undefined } : { error: "usage: /me ACTION" };
    case "who": return { type: "who", room: rest || state.current || undefined };
    case "rooms": return { type: "rooms" };
    case "help": return { type: "help" };
    case "history": return { type: "history", count: Number(rest) || HISTORY_STEP };
    case "search": return rest ? { type: "search", text: rest } : { error: "usage: /search WORDS" };
    case "quit": return { type: "quit", reason: rest || undefined };
    default: return { error: `unknown command /${name} (try /help)` };
  }
}

function submit() {
  const input = $("input");
  const text = input.value.trim();
  if (!text) return;
  const command = parse(text);
  if (command.error) {
    notice(state.current, command.error, "error");
    return;
  }
  if (send(command)) input.value = "";
}

function setUp() {
  const input = $("input");
  input.addEventListener("keydown", (event) => {
    // While an input method is composing (Chinese, Japanese, ...), Enter
    // confirms the composition; it must not send the line.
    if (event.key !== "Enter" || event.shiftKey) return;
    if (event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    submit();
  });
  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("join-input").value.trim().replace(/^#/, "");
    if (name && send({ type: "join", room: name })) $("join-input").value = "";
  });
  $("toggle-rooms").addEventListener("click", () => $("rooms").classList.toggle("open"));
  // Scrolled to the top: fetch older history.
  $("messages").addEventListener("scroll", () => {
    const list = $("messages");
    if (list.scrollTop > 0 || state.loadingOlder || !state.current || state.current === PRIVATE) return;
    state.loadingOlder = true;
    const count = room(state.current).messages.filter((entry) => entry.id).length + HISTORY_STEP;
    send({ type: "history", count });
  });
  const dialog = $("nick-dialog");
  $("nick-form").addEventListener("submit", () => {
    state.nick = $("nick-input").value.trim();
    localStorage.setItem("sockchat.nick", state.nick);
    connect();
  });
  if (state.nick) {
    connect();
  } else {
    dialog.showModal();
  }
}

setUp();
