/** What the skeleton apps of `init --app` share: their folder and their package.json. */
import { CLI_VERSION } from '../version.js';

/** The skeleton app's folder inside the deployment folder. */
export const APP_DIR = 'app';

/**
 * The SDK version the skeleton asks for: the workspace packages are released together, so the
 * CLI's own version names the SDK it was written against.
 */
export function sdkVersionRange(): string {
  return `^${CLI_VERSION}`;
}

export interface AppPackage {
  readonly name: string;
  readonly description: string;
  readonly scripts: Readonly<Record<string, string>>;
  readonly dependencies: Readonly<Record<string, string>>;
  readonly devDependencies?: Readonly<Record<string, string>>;
}

/** A private ESM package.json for the app (never published by accident). */
export function appPackageJson(p: AppPackage): string {
  return `${JSON.stringify(
    {
      name: p.name,
      version: '0.1.0',
      private: true,
      description: p.description,
      type: 'module',
      engines: { node: '>=20.16' },
      scripts: p.scripts,
      dependencies: p.dependencies,
      ...(p.devDependencies ? { devDependencies: p.devDependencies } : {}),
    },
    null,
    2,
  )}\n`;
}

/**
 * README lines for as long as @meshwhisper/sdk is not on the registry: `npm install` cannot fetch
 * it, a link to a built checkout stands in (what packages/cli/test/init-first-message.test.ts does).
 */
export function unpublishedSdkNote(): readonly string[] {
  return [
    'Until `@meshwhisper/sdk` is published, link it from a MeshWhisper checkout instead of installing it',
    '(`npm run build` there first; its own dependencies then come from the checkout):',
    '',
    '```sh',
    'mkdir -p node_modules/@meshwhisper && ln -s /path/to/meshwhisper/packages/sdk node_modules/@meshwhisper/sdk',
    '```',
  ];
}
