// Captures the microphone at the AudioContext's (the device's) rate and posts 16-bit PCM chunks of
// about 100 ms to the page. A {stop: true} message posts what is left, then {stopped: true}.
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = Math.max(128, Math.round(sampleRate * (options.processorOptions.chunkMs || 100) / 1000));
    this.buffer = new Int16Array(this.size);
    this.filled = 0;
    this.stopped = false;
    this.port.onmessage = (event) => {
      if (event.data && event.data.stop && !this.stopped) {
        this.stopped = true;
        this.flush();
        this.port.postMessage({stopped: true});
      }
    };
  }

  flush() {
    if (this.filled > 0) {
      const chunk = this.buffer.slice(0, this.filled);
      this.port.postMessage({pcm: chunk.buffer}, [chunk.buffer]);
      this.filled = 0;
    }
  }

  process(inputs) {
    if (this.stopped) return false;
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      const x = Math.max(-1, Math.min(1, channel[i]));
      this.buffer[this.filled++] = x < 0 ? Math.round(x * 32768) : Math.round(x * 32767);
      if (this.filled === this.size) this.flush();
    }
    return true;
  }
}

registerProcessor('pcm-capture', PcmCapture);
