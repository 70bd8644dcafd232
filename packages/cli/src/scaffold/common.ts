/** What the skeleton apps of `init --app` share: their folder, their package.json, the vendored SDK. */
import type { GeneratedFile, ScaffoldContext } from '../init.js';
import type { VendoredPackage } from './checkout.js';

/** The skeleton app's folder inside the deployment folder. */
export const APP_DIR = 'app';
/** Inside APP_DIR: the SDK tarballs the app's package.json points at. */
export const VENDOR_DIR = 'vendor';
/** The Node.js versions the SDK's dependencies accept (@noble/* ask for ≥ 20.19). */
export const APP_NODE_ENGINES = '>=20.19';

export interface AppPackage {
  readonly name: string;
  readonly description: string;
  readonly scripts: Readonly<Record<string, string>>;
  readonly dependencies: Readonly<Record<string, string>>;
  readonly devDependencies?: Readonly<Record<string, string>>;
}

/**
 * Every `@meshwhisper/*` package as a `file:` tarball, and `overrides` pinning the SDK's own
 * `@meshwhisper/*` dependencies to the same tarballs: npm never looks those names up in a
 * registry (where the scope belongs to another project).
 */
export function vendoredDependencies(vendor: readonly VendoredPackage[]): { dependencies: Record<string, string>; overrides: Record<string, string> } {
  const dependencies: Record<string, string> = {};
  const overrides: Record<string, string> = {};
  for (const p of [...vendor].reverse()) {
    dependencies[p.name] = `file:${VENDOR_DIR}/${p.file}`;
    if (p.name !== '@meshwhisper/sdk') overrides[p.name] = `$${p.name}`;
  }
  return { dependencies, overrides };
}

/** app/vendor/*.tgz */
export function vendorFiles(ctx: ScaffoldContext): GeneratedFile[] {
  return ctx.vendor.map((p) => ({ path: `${APP_DIR}/${VENDOR_DIR}/${p.file}`, content: p.bytes, mode: 0o644, secret: false }));
}

/** A private ESM package.json for the app (never published by accident). */
export function appPackageJson(p: AppPackage, vendor: readonly VendoredPackage[]): string {
  const { dependencies, overrides } = vendoredDependencies(vendor);
  return `${JSON.stringify(
    {
      name: p.name,
      version: '0.1.0',
      private: true,
      description: p.description,
      type: 'module',
      engines: { node: APP_NODE_ENGINES },
      scripts: p.scripts,
      dependencies: { ...dependencies, ...p.dependencies },
      ...(p.devDependencies ? { devDependencies: p.devDependencies } : {}),
      overrides,
    },
    null,
    2,
  )}\n`;
}

/** README lines on where the SDK comes from. */
export function vendorNote(ctx: ScaffoldContext): readonly string[] {
  return [
    `The SDK comes from \`${APP_DIR}/${VENDOR_DIR}/\`: tarballs \`npm pack\` made from the MeshWhisper checkout that ran \`init\``,
    `(${ctx.vendor.map((p) => `\`${p.file}\``).join(', ')}). \`npm install\` takes \`@meshwhisper/*\` from there only and`,
    'the other dependencies from the npm registry. Do not `npm install @meshwhisper/sdk` from the registry: the',
    '`@meshwhisper` scope there belongs to another project. After updating the checkout, refresh the tarballs',
    `with \`meshwhisper init --app … --force\` in a scratch folder and copy its \`${APP_DIR}/${VENDOR_DIR}/\` over.`,
  ];
}
