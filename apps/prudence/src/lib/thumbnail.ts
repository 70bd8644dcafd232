/** Thumbnails for image attachments: drawn on a canvas in the browser, sent inline (≤ MAX_THUMBNAIL_BYTES). */
import { MAX_THUMBNAIL_BYTES } from '@meshwhisper/sdk';

/** Longest side of a thumbnail, in pixels. */
const THUMBNAIL_SIZE = 240;

/** A JPEG thumbnail of an image file, or undefined when the file is not an image the browser can decode. */
export async function makeThumbnail(file: Blob): Promise<{ data: Uint8Array; mimeType: string } | undefined> {
  if (!file.type.startsWith('image/')) return undefined;
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return undefined;
  }
  const scale = Math.min(1, THUMBNAIL_SIZE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext('2d')?.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  for (const quality of [0.8, 0.6, 0.4, 0.25]) {
    const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, 'image/jpeg', quality));
    if (blob && blob.size <= MAX_THUMBNAIL_BYTES) return { data: new Uint8Array(await blob.arrayBuffer()), mimeType: 'image/jpeg' };
  }
  return undefined;
}
