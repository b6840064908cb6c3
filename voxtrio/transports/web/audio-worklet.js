// The page's audio, on the audio thread: microphone capture and agent playback.
//
// voxtrio-capture: the microphone at the context's rate, resampled to 16 kHz
// and cut into 20 ms PCM16 frames (640 bytes), posted to the page to send.
// voxtrio-playback: the agent's PCM16 at the server's rate, resampled to the
// context's rate into a small jitter buffer; a "clear" empties it at once.
// It reports its play head (seconds played since the last clear) so the
// server knows what the user really heard.
//
// Both processors share this global scope, so playback can tell how long after
// the end of the user's speech (the last loud capture block) its first sound came.

const VOICED = 0.01; // RMS of a block that counts as the user making sound
const AUDIBLE = 0.004; // peak of an output block that counts as sound
let lastVoicedTime = null; // context time of the end of the last voiced capture block

// A streaming windowed-sinc resampler (any ratio), low-passed below the
// lower Nyquist rate, from a precomputed kernel table.
class Resampler {
  constructor(inRate, outRate, halfWidth = 8) {
    this.step = inRate / outRate; // input samples per output sample
    const scale = Math.min(1, outRate / inRate);
    this.half = Math.ceil(halfWidth / scale);
    this.cutoff = 0.5 * scale * 0.92; // cycles per input sample
    this.resolution = 64;
    const size = 2 * this.half * this.resolution + 1;
    this.table = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      const t = i / this.resolution - this.half;
      const x = 2 * this.cutoff * t;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const window = 0.42 + 0.5 * Math.cos(Math.PI * t / this.half) + 0.08 * Math.cos(2 * Math.PI * t / this.half);
      this.table[i] = 2 * this.cutoff * sinc * window;
    }
    this.reset();
  }

  reset() {
    this.buffer = new Float32Array(this.half); // history: silence before the start
    this.position = this.half; // of the next output, in input samples from buffer[0]
  }

  push(input) {
    const buffer = new Float32Array(this.buffer.length + input.length);
    buffer.set(this.buffer);
    buffer.set(input, this.buffer.length);
    const count = Math.max(0, Math.ceil((buffer.length - this.half - this.position) / this.step));
    const out = new Float32Array(count);
    let n = 0;
    while (n < count && this.position + this.half < buffer.length) {
      const center = Math.floor(this.position);
      const fraction = this.position - center;
      let sum = 0;
      for (let k = 1 - this.half; k <= this.half; k++) {
        const t = k - fraction;
        sum += buffer[center + k] * this.table[Math.round((t + this.half) * this.resolution)];
      }
      out[n++] = sum;
      this.position += this.step;
    }
    const keep = Math.max(0, Math.floor(this.position) - this.half);
    this.buffer = buffer.slice(keep);
    this.position -= keep;
    return n === count ? out : out.subarray(0, n);
  }
}

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const target = options.processorOptions.sampleRate;
    this.resampler = new Resampler(sampleRate, target);
    this.frameSamples = Math.round(target * options.processorOptions.frameMs / 1000);
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.level = 0;
    this.blocks = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    let mono = input[0];
    if (input.length > 1) {
      mono = new Float32Array(input[0].length);
      for (const channel of input) for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / input.length;
    }
    let energy = 0;
    for (let i = 0; i < mono.length; i++) energy += mono[i] * mono[i];
    const rms = Math.sqrt(energy / mono.length);
    if (rms > VOICED) lastVoicedTime = currentTime + mono.length / sampleRate;
    this.level = Math.max(rms, this.level * 0.9);
    for (const sample of this.resampler.push(mono)) {
      this.frame[this.filled++] = Math.max(-32768, Math.min(32767, Math.round(sample * 32767)));
      if (this.filled === this.frameSamples) {
        this.port.postMessage({ type: "frame", pcm: this.frame.buffer }, [this.frame.buffer]);
        this.frame = new Int16Array(this.frameSamples);
        this.filled = 0;
      }
    }
    if (++this.blocks % 8 === 0) this.port.postMessage({ type: "level", level: this.level });
    return true;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.setRate(options.processorOptions.sampleRate);
    this.prebuffer = Math.round(options.processorOptions.prebufferMs * sampleRate / 1000);
    this.reportEvery = Math.round(0.1 * sampleRate);
    this.queue = [];
    this.queued = 0;
    this.state = "idle"; // idle (nothing to play), buffering (waiting for the prebuffer), playing
    this.paused = false;
    this.waited = 0;
    this.epoch = 0;
    this.played = 0; // context samples played in this epoch
    this.sinceReport = 0;
    this.stats = { peak: 0, audibleBlocks: 0, underruns: 0, clears: 0, audibleAfterStop: 0, stops: 0 };
    this.stopped = false; // a clear or pause came, and nothing has played since
    this.lastAudible = -1; // context time of the last audible output block
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  setRate(rate) {
    this.inRate = rate;
    this.resampler = new Resampler(rate, sampleRate);
  }

  onMessage(message) {
    if (message.type === "audio") {
      const pcm = new Int16Array(message.pcm);
      const floats = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) floats[i] = pcm[i] / 32768;
      const out = this.resampler.push(floats);
      if (out.length) {
        this.queue.push(out);
        this.queued += out.length;
      }
      if (this.state === "idle") {
        this.state = "buffering";
        this.waited = 0;
        this.report(); // the server learns at once that this audio has not played yet
      }
      this.stopped = false;
    } else if (message.type === "clear") {
      this.queue = [];
      this.queued = 0;
      this.resampler.reset();
      this.epoch = message.epoch;
      this.played = 0;
      this.state = "idle";
      this.stats.clears++;
      this.stop();
      this.report();
    } else if (message.type === "pause") {
      this.paused = true;
      this.stop();
      this.report();
    } else if (message.type === "resume") {
      this.paused = false;
      this.stopped = false;
      this.report();
    } else if (message.type === "format") {
      this.setRate(message.sampleRate);
    }
  }

  stop() {
    this.stopped = true;
    this.stats.stops++;
  }

  report() {
    this.sinceReport = 0;
    const state = this.paused ? "paused" : this.state === "playing" ? "playing" : "idle";
    this.port.postMessage({ type: "playback", epoch: this.epoch, played: this.played / sampleRate, state, stats: this.stats });
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    if (!this.paused && this.state === "buffering") {
      this.waited += out.length;
      if (this.queued >= this.prebuffer || this.waited >= this.prebuffer) {
        this.state = "playing";
        if (currentTime - this.lastAudible > 0.5) {
          // The start of an utterance: how long after the user's last sound?
          this.port.postMessage({ type: "utterance", at: currentTime, userSpeechEnd: lastVoicedTime });
        }
        this.report();
      }
    }
    if (!this.paused && this.state === "playing") {
      let filled = 0;
      while (filled < out.length && this.queue.length) {
        const head = this.queue[0];
        const take = Math.min(out.length - filled, head.length);
        out.set(head.subarray(0, take), filled);
        filled += take;
        if (take === head.length) this.queue.shift();
        else this.queue[0] = head.subarray(take);
      }
      this.queued -= filled;
      this.played += filled;
      this.sinceReport += filled;
      if (!this.queue.length) {
        this.state = "idle";
        this.stats.underruns++;
        this.report();
      } else if (this.sinceReport >= this.reportEvery) {
        this.report();
      }
    }
    let peak = 0;
    for (let i = 0; i < out.length; i++) peak = Math.max(peak, Math.abs(out[i]));
    if (peak > AUDIBLE) {
      this.stats.audibleBlocks++;
      this.stats.peak = Math.max(this.stats.peak, peak);
      if (this.stopped) this.stats.audibleAfterStop++;
      this.lastAudible = currentTime;
    }
    return true;
  }
}

registerProcessor("voxtrio-capture", Capture);
registerProcessor("voxtrio-playback", Playback);
