// The voxtrio page: a call with the agent over one WebSocket (protocol version 1,
// docs/client-events.md). Microphone frames go out as binary PCM16 16 kHz 20 ms;
// agent audio comes back as binary PCM16; everything else is JSON events.
// What the page measured is kept in window.voxtrio (the browser test reads it).

const PROTOCOL_VERSION = 1;
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

const page = (window.voxtrio = {
  connected: false,
  framesSent: 0,
  events: [], // every JSON event received, in order
  utterances: [], // {at, userSpeechEnd, latency}: agent sound starting after the user's
  playback: null, // the playback worklet's last report (stats: peak, audibleBlocks, ...)
  errors: [],
  closed: null,
});

let socket = null;
let context = null;
let microphone = null;
let capture = null;
let playback = null;
let muted = false;
const agentLines = new Map(); // speech_id -> the transcript line of its current utterance
let userInterim = null;

function showError(text) {
  page.errors.push(text);
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
}

function setPill(id, state, text) {
  const pill = $(id);
  pill.dataset.state = state;
  pill.textContent = text || state;
}

function addLine(kind, who, text) {
  const item = document.createElement("li");
  item.className = kind;
  if (who) {
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who;
    item.append(name);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.append(body);
  $("transcript").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

function setLineText(item, text) {
  item.querySelector(".text").textContent = text;
}

function onEvent(event) {
  page.events.push(event);
  switch (event.type) {
    case "ready":
      if (event.version !== PROTOCOL_VERSION) showError(`the server speaks protocol ${event.version}, this page ${PROTOCOL_VERSION}`);
      playback.port.postMessage({ type: "format", sampleRate: event.output.sample_rate });
      setPill("connection", "connected", "connected");
      break;
    case "clear":
    case "pause":
    case "resume":
      playback.port.postMessage(event);
      break;
    case "agent_state":
      setPill("agent-state", event.state);
      break;
    case "user_state":
      setPill("user-state", event.state);
      break;
    case "user_transcript":
      if (!userInterim) userInterim = addLine("user interim", "you", "");
      setLineText(userInterim, event.text);
      if (event.final) {
        userInterim.classList.remove("interim");
        userInterim = null;
      }
      break;
    case "agent_transcript": {
      let line = agentLines.get(event.speech_id);
      if (!line) {
        line = addLine("agent", "agent", "");
        agentLines.set(event.speech_id, line);
      }
      setLineText(line, event.text);
      if (event.final) {
        agentLines.delete(event.speech_id);
        if (!event.text) line.remove();
      }
      break;
    }
    case "tool_calls":
      for (const call of event.calls) {
        addLine("note", "", `tool ${call.name}(${JSON.stringify(call.arguments)}) -> ${call.output}`);
      }
      break;
    case "handoff":
      if (event.from) addLine("note", "", `handed over: ${event.from} -> ${event.to}`);
      break;
    case "metrics":
      if (event.first_audio != null) addLine("note", "", `end of speech to first audio: ${Math.round(event.first_audio * 1000)} ms`);
      break;
    case "error":
      showError(`${event.source} error (${event.code}): ${event.message}`);
      break;
    case "close":
      page.closed = event.reason;
      setPill("connection", "closed", `call ended (${event.reason})`);
      break;
  }
}

async function getToken() {
  const response = await fetch("/token", { method: "POST", credentials: "same-origin" });
  if (!response.ok) throw new Error(`the server refused a session token (${response.status}): ${await response.text()}`);
  return response.json();
}

async function startAudio() {
  const echoCancellation = params.get("echo_cancellation") !== "0";
  microphone = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation, noiseSuppression: echoCancellation, autoGainControl: echoCancellation },
  });
  context = new AudioContext({ latencyHint: "interactive" });
  await context.audioWorklet.addModule("/static/audio-worklet.js");
  capture = new AudioWorkletNode(context, "voxtrio-capture", {
    numberOfOutputs: 1,
    processorOptions: { sampleRate: 16000, frameMs: 20 },
  });
  playback = new AudioWorkletNode(context, "voxtrio-playback", {
    numberOfInputs: 0,
    outputChannelCount: [1],
    processorOptions: { sampleRate: 24000, prebufferMs: 60 },
  });
  const sink = context.createGain(); // keeps the capture node pulled, silently
  sink.gain.value = 0;
  context.createMediaStreamSource(microphone).connect(capture).connect(sink).connect(context.destination);
  playback.connect(context.destination);
  capture.port.onmessage = ({ data }) => {
    if (data.type === "level") $("mic-level").value = Math.min(1, data.level * 5);
    else if (data.type === "frame" && !muted && socket && socket.readyState === WebSocket.OPEN) {
      socket.send(data.pcm);
      page.framesSent++;
    }
  };
  playback.port.onmessage = ({ data }) => {
    if (data.type === "playback") {
      page.playback = data;
      $("out-level").value = data.state === "playing" ? 1 : 0;
      if (socket && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ type: "playback", epoch: data.epoch, played: data.played, state: data.state }));
      }
    } else if (data.type === "utterance") {
      const latency = data.userSpeechEnd == null ? null : data.at - data.userSpeechEnd;
      page.utterances.push({ at: data.at, userSpeechEnd: data.userSpeechEnd, latency });
    }
  };
  await context.resume();
}

function stopAudio() {
  if (microphone) microphone.getTracks().forEach((track) => track.stop());
  if (context) context.close();
  microphone = context = null;
}

function setInCall(inCall) {
  $("start").disabled = inCall;
  $("mute").disabled = !inCall;
  $("hangup").disabled = !inCall;
  $("text").disabled = !inCall;
  $("send").disabled = !inCall;
}

async function start() {
  $("error").hidden = true;
  setInCall(true);
  setPill("connection", "connecting", "connecting");
  try {
    const { token, ws_path } = await getToken();
    await startAudio();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}${ws_path}?v=${PROTOCOL_VERSION}&token=${encodeURIComponent(token)}`);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => (page.connected = true);
    socket.onmessage = ({ data }) => {
      if (typeof data === "string") onEvent(JSON.parse(data));
      else playback.port.postMessage({ type: "audio", pcm: data }, [data]);
    };
    socket.onerror = () => showError("the connection to the server failed");
    socket.onclose = (event) => {
      page.connected = false;
      if (!page.closed) {
        page.closed = event.reason || `code ${event.code}`;
        setPill("connection", "error", "disconnected");
        showError(`disconnected from the server (code ${event.code}${event.reason ? ": " + event.reason : ""})`);
      }
      setInCall(false);
      stopAudio();
    };
  } catch (error) {
    setPill("connection", "error", "not connected");
    showError(`could not start the call: ${error.message || error}`);
    setInCall(false);
    stopAudio();
  }
}

$("start").addEventListener("click", start);
$("mute").addEventListener("click", () => {
  muted = !muted;
  $("mute").setAttribute("aria-pressed", String(muted));
  $("mute").textContent = muted ? "Unmute" : "Mute";
  if (socket) socket.send(JSON.stringify({ type: muted ? "mute" : "unmute" }));
});
$("hangup").addEventListener("click", () => {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "end_call" }));
});
$("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ type: "text_input", text }));
  addLine("user", "you", text);
  $("text").value = "";
});
