#!/usr/bin/env node
import * as fs from 'node:fs';
import * as path from 'node:path';
import { App, DefaultStackSynthesizer } from 'aws-cdk-lib';
import { AgentwireStack } from '../lib/agentwire-stack';

const app = new App();

// What `bash functions/build.sh` writes: <bootstrapDir>/<binary>/bootstrap. Relative paths
// are taken from infra/cdk, where the CLI runs the app.
const bootstrapDir = path.resolve(
  app.node.tryGetContext('bootstrapDir') ?? path.join(__dirname, '..', '..', '..', '..', 'target', 'lambda'),
);
if (!fs.existsSync(bootstrapDir)) {
  throw new Error(`no bootstraps at ${bootstrapDir}: run bash functions/build.sh, or pass -c bootstrapDir=DIR`);
}

new AgentwireStack(app, app.node.tryGetContext('stackName') ?? 'agentwire', {
  bootstrapDir,
  // No env: the stack is environment-agnostic, so synth never looks up an account or region.
  // No BootstrapVersion parameter, so the parameters are the SAM template's; `cdk bootstrap`
  // is still needed once per account and region for the code assets.
  synthesizer: new DefaultStackSynthesizer({ generateBootstrapVersionRule: false }),
  analyticsReporting: false,
  description:
    'agentwire: durable agent sessions (Durable Streams over an HTTP API, push over a WebSocket API) on Lambda, DynamoDB and S3.',
});
