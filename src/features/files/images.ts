import type { Metadata } from 'sharp';

// sharp (libvips, ~10 MiB resident with its native library) is loaded by the first image upload, not at
// start-up: a server nobody sends images to never maps it. The first image waits for it once (50–400 ms, by load).
async function loadSharp() {
  return (await import('sharp')).default;
}

/**
 * Images as models receive them: decoded once at upload (which proves the bytes are the image they claim
 * to be), turned upright by their EXIF orientation, every metadata block (EXIF, GPS, XMP, ICC) dropped, and
 * scaled to fit 1568 px on the long edge — Anthropic's recommended size, inside OpenAI's (2048 px, then
 * 768 px on the short edge) and Gemini's limits — so one derived image serves every provider.
 * sharp is used because its native build ships inside npm packages (@img/sharp-*): nothing is downloaded at
 * install time, and libvips decodes with bounded memory, far faster than a pure-JS decoder.
 */
export const IMAGE_LIMITS = {
  /** Decoded pixels accepted: a decompression bomb (a tiny PNG declaring 100k × 100k) is refused unread. */
  maxInputPixels: 50_000_000,
  longEdge: 1568,
};

export interface PreparedImage {
  data: Buffer;
  mediaType: 'image/png' | 'image/jpeg';
  width: number;
  height: number;
  /** The original's dimensions. */
  sourceWidth: number;
  sourceHeight: number;
}

export class ImageRefused extends Error {}

export async function prepareImage(file: string, extension: string): Promise<PreparedImage> {
  const sharp = await loadSharp();
  const input = () =>
    sharp(file, { limitInputPixels: IMAGE_LIMITS.maxInputPixels, failOn: 'error', animated: false });
  let meta: Metadata;
  try {
    meta = await input().metadata();
  } catch (err) {
    throw new ImageRefused(describe(err));
  }
  const width = meta.autoOrient?.width ?? meta.width ?? 0;
  const height = meta.autoOrient?.height ?? meta.height ?? 0;
  if (!width || !height) throw new ImageRefused('the image has no dimensions');
  if (width * height > IMAGE_LIMITS.maxInputPixels)
    throw new ImageRefused(
      `the image is ${width} × ${height} pixels (at most ${IMAGE_LIMITS.maxInputPixels / 1_000_000} megapixels)`,
    );
  // PNG keeps transparency and text-sharp edges; photos (JPEG, WebP, GIF's first frame) become JPEG.
  const png = extension === 'png';
  try {
    const pipeline = input().rotate().resize({
      width: IMAGE_LIMITS.longEdge,
      height: IMAGE_LIMITS.longEdge,
      fit: 'inside',
      withoutEnlargement: true,
    });
    const { data, info } = await (png
      ? pipeline.png({ compressionLevel: 9 })
      : pipeline.flatten({ background: '#ffffff' }).jpeg({ quality: 85 })
    ).toBuffer({ resolveWithObject: true });
    return {
      data,
      mediaType: png ? 'image/png' : 'image/jpeg',
      width: info.width,
      height: info.height,
      sourceWidth: width,
      sourceHeight: height,
    };
  } catch (err) {
    throw new ImageRefused(describe(err));
  }
}

function describe(err: unknown) {
  const message = (err as Error)?.message ?? '';
  if (/pixel limit/i.test(message))
    return `the image has more than ${IMAGE_LIMITS.maxInputPixels / 1_000_000} megapixels`;
  return `the image could not be decoded (${message.split('\n')[0]?.slice(0, 200) ?? 'unknown error'})`;
}
