/** @meshwhisper/cli as a library: the commands behind the `meshwhisper` binary (bin.ts). */
export { runCli, USAGE } from './cli.js';
export { CliError, CliErrorCode } from './errors.js';
export type { CliIo } from './io.js';
export { runDoctor, normalizeTarget } from './doctor/doctor.js';
export type { DoctorOptions } from './doctor/doctor.js';
export { renderText } from './doctor/report.js';
export type { CheckResult, CheckStatus, DoctorReport } from './doctor/report.js';
export { APP_SCAFFOLDS, runInit } from './init.js';
export type { AppScaffold, GeneratedFile, InitOptions, InitResult, ScaffoldContext } from './init.js';
export { renderEnvFile, schemaVariables, pushVariables } from './env-template.js';
export { parseEnv } from './env-file.js';
export { loadNodeEnv } from './node-env.js';
export type { NodeEnv } from './node-env.js';
export { PUSH_SETTINGS } from './push-settings.js';
export type { PushService, PushSetting } from './push-settings.js';
export { generateVapidKeys, vapidProblems } from './vapid.js';
export type { VapidKeys } from './vapid.js';
export { CLI_VERSION } from './version.js';
