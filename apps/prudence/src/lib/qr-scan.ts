/**
 * Reading QR codes with the camera: the browser's BarcodeDetector where it exists, otherwise jsQR
 * (loaded only when a scan starts, so it costs nothing on first load). Callers offer a paste field
 * too: no camera, no permission, or a desktop without one.
 */

interface Detector {
  detect(source: HTMLVideoElement): Promise<{ rawValue: string }[]>;
}

type JsQr = (data: Uint8ClampedArray, width: number, height: number) => { data: string; binaryData: number[] } | null;

/** jsQR is CommonJS: its function is the default export, or that export's own default. */
async function loadJsQr(): Promise<JsQr> {
  const mod = (await import('jsqr')) as unknown as { default: JsQr | { default: JsQr } };
  return typeof mod.default === 'function' ? mod.default : mod.default.default;
}

export const hasCamera = (): boolean => typeof navigator.mediaDevices?.getUserMedia === 'function';

/** Result of one frame: text (contact cards) and raw bytes (safety numbers are binary). */
export interface ScanResult {
  readonly text: string;
  readonly bytes?: Uint8Array;
}

/**
 * Starts the camera into `video` and calls `onResult` for the first code found. Returns stop().
 * Throws when the camera cannot be opened (permission refused, none present).
 */
export async function startScan(video: HTMLVideoElement, onResult: (r: ScanResult) => void, wantBytes = false): Promise<() => void> {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
  video.srcObject = stream;
  await video.play();
  let stopped = false;
  const stop = (): void => {
    stopped = true;
    for (const t of stream.getTracks()) t.stop();
    video.srcObject = null;
  };
  const Native = (globalThis as { BarcodeDetector?: new (o: { formats: string[] }) => Detector }).BarcodeDetector;
  const native = !wantBytes && Native ? new Native({ formats: ['qr_code'] }) : undefined;
  const jsQR = native ? undefined : await loadJsQr();
  const canvas = document.createElement('canvas');
  const tick = async (): Promise<void> => {
    if (stopped) return;
    try {
      if (native) {
        const [code] = await native.detect(video);
        if (code) return void (stop(), onResult({ text: code.rawValue }));
      } else if (jsQR && video.videoWidth > 0) {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
        ctx.drawImage(video, 0, 0);
        const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
        const code = jsQR(img.data, img.width, img.height);
        if (code) return void (stop(), onResult({ text: code.data, bytes: Uint8Array.from(code.binaryData) }));
      }
    } catch {
      // A frame that cannot be read: try the next one.
    }
    requestAnimationFrame(() => void tick());
  };
  void tick();
  return stop;
}
