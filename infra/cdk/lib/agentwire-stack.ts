import * as path from 'node:path';
import {
  Aws,
  CfnCondition,
  CfnElement,
  CfnOutput,
  CfnParameter,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  StackProps,
  Token,
  Validations,
} from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct, IConstruct } from 'constructs';

// The system infra/template.yaml deploys, resource for resource. Logical IDs are the ones
// SAM gives (including those it generates: roles, permissions, event rules and mappings), so
// the two templates read alike and infra/cdk/drift.py can compare them reference for
// reference. L1 constructs stand where an L2 would add resources or permissions SAM does
// not make (grants, a bucket-notification custom resource, per-route integrations).

export interface AgentwireStackProps extends StackProps {
  /** Holds <binary>/bootstrap for each Lambda binary (target/lambda after functions/build.sh). */
  readonly bootstrapDir: string;
}

/** Gives an L2 construct's resource (or an L1) the logical ID SAM gives it. */
function named<T extends IConstruct>(construct: T, logicalId: string): T {
  const element = construct instanceof CfnElement ? construct : (construct.node.defaultChild as CfnElement);
  element.overrideLogicalId(logicalId);
  return construct;
}

/** The one permission that `add` makes (an event-rule target puts it under the rule), renamed as SAM names it. */
function nameNewPermission(scope: Construct, logicalId: string, add: () => void): void {
  const permissions = () => scope.node.findAll().filter((c) => c instanceof lambda.CfnPermission);
  const before = new Set(permissions());
  add();
  const added = permissions().filter((c) => !before.has(c));
  if (added.length !== 1) throw new Error(`expected one new permission for ${logicalId}, got ${added.length}`);
  named(added[0], logicalId);
}

function allow(sid: string, actions: string[], resources: string[]): iam.PolicyStatement {
  return new iam.PolicyStatement({ sid, effect: iam.Effect.ALLOW, actions, resources });
}

interface FunctionSpec {
  /** Logical ID, as in the SAM template. */
  readonly id: string;
  readonly binary: string;
  readonly description: string;
  readonly timeout: number;
  readonly memorySize?: number;
  readonly reservedConcurrentExecutions?: number;
  readonly environment?: Record<string, string>;
  readonly statements: iam.PolicyStatement[];
  /** AWS managed policies SAM adds for an event source, beside basic execution. */
  readonly managedPolicies?: string[];
  /** Inline policies SAM adds for an event source, by SAM's name. */
  readonly extraPolicies?: Record<string, iam.PolicyStatement[]>;
}

// HTTP API routes, named as the SAM template's events: the Durable Streams API goes to the
// streams function, the rest to the HTTP function.
type HttpRouteTarget = 'StreamsFunction' | 'HttpFunction';
const HTTP_ROUTES: ReadonlyArray<{ id: string; fn: HttpRouteTarget; method: string; path: string; timeoutInMillis?: number }> = [
  // Long-poll waits up to LongPollTimeoutMs; API Gateway gives up at 29 s anyway.
  { id: 'Stream', fn: 'StreamsFunction', method: 'ANY', path: '/v1/stream/{proxy+}', timeoutInMillis: 29000 },
  { id: 'Health', fn: 'StreamsFunction', method: 'GET', path: '/healthz' },
  { id: 'Traces', fn: 'HttpFunction', method: 'POST', path: '/v1/traces' },
  { id: 'TraceScores', fn: 'HttpFunction', method: 'GET', path: '/v1/traces/{trace_id}/scores' },
  { id: 'Scores', fn: 'HttpFunction', method: 'GET', path: '/v1/scores' },
  { id: 'PutRubric', fn: 'HttpFunction', method: 'PUT', path: '/v1/rubrics/{name}/{version}' },
  { id: 'GetRubric', fn: 'HttpFunction', method: 'GET', path: '/v1/rubrics/{name}' },
  { id: 'ListQueues', fn: 'HttpFunction', method: 'GET', path: '/v1/queues' },
  { id: 'CreateQueue', fn: 'HttpFunction', method: 'POST', path: '/v1/queues' },
  { id: 'GetQueue', fn: 'HttpFunction', method: 'GET', path: '/v1/queues/{queue}' },
  { id: 'QueueCalls', fn: 'HttpFunction', method: 'ANY', path: '/v1/queues/{queue}/{proxy+}' },
  { id: 'Evals', fn: 'HttpFunction', method: 'ANY', path: '/v1/evals/{proxy+}' },
  { id: 'Reports', fn: 'HttpFunction', method: 'GET', path: '/reports' },
  { id: 'ReportPages', fn: 'HttpFunction', method: 'GET', path: '/reports/{day}' },
  { id: 'GradingPage', fn: 'HttpFunction', method: 'GET', path: '/grade' },
  { id: 'GradingPageFiles', fn: 'HttpFunction', method: 'GET', path: '/grade/{proxy+}' },
];

const WEBSOCKET_ROUTES: ReadonlyArray<[string, string]> = [
  ['ConnectRoute', '$connect'],
  ['DisconnectRoute', '$disconnect'],
  ['DefaultRoute', '$default'],
  ['SubscribeRoute', 'subscribe'],
  ['UnsubscribeRoute', 'unsubscribe'],
  ['ControlRoute', 'control'],
  ['SendRoute', 'send'],
  ['PresenceRoute', 'presence'],
  ['PingRoute', 'ping'],
];

// API Gateway replaces the function's CORS headers with these (see the SAM template).
const CORS = {
  allowOrigins: ['*'],
  allowHeaders: [
    'content-type',
    'authorization',
    'producer-id',
    'producer-epoch',
    'producer-seq',
    'stream-seq',
    'stream-ttl',
    'stream-expires-at',
    'stream-closed',
    'stream-forked-from',
    'stream-fork-offset',
    'stream-fork-sub-offset',
    'if-none-match',
    'agentwire-control-since',
  ],
  allowMethods: ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS'],
  exposeHeaders: [
    'stream-next-offset',
    'stream-cursor',
    'stream-up-to-date',
    'stream-closed',
    'stream-ttl',
    'stream-expires-at',
    'stream-sse-data-encoding',
    'etag',
    'location',
    'content-type',
    'producer-epoch',
    'producer-seq',
    'producer-expected-seq',
    'producer-received-seq',
    'agentwire-control',
  ],
  maxAge: 86400,
};

export class AgentwireStack extends Stack {
  constructor(scope: Construct, id: string, props: AgentwireStackProps) {
    super(scope, id, props);

    // --- Parameters and conditions (the SAM template's, one for one) -------------------
    const stageName = new CfnParameter(this, 'StageName', {
      type: 'String',
      default: 'v1',
      allowedPattern: '^[A-Za-z0-9_-]{1,128}$',
      description: 'WebSocket API stage; part of the wss:// URL and of the management endpoint.',
    });
    const architecture = new CfnParameter(this, 'Architecture', {
      type: 'String',
      default: 'x86_64',
      allowedValues: ['x86_64', 'arm64'],
      description: 'Lambda architecture; build the bootstraps for the same one (functions/build.sh).',
    });
    const logRetentionDays = new CfnParameter(this, 'LogRetentionDays', {
      type: 'Number',
      // A string, like the allowed values (CfnParameter takes only strings there).
      default: '30',
      allowedValues: [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653].map(String),
      description: "Days the functions' CloudWatch logs are kept.",
    });
    const traceRetentionDays = new CfnParameter(this, 'TraceRetentionDays', {
      type: 'Number',
      default: 365,
      // Traces move to STANDARD_IA at 30 days; S3 requires expiry after the transition.
      minValue: 31,
      description: 'Days archived traces (s3://bucket/traces/) are kept.',
    });
    const idleMinutes = new CfnParameter(this, 'IdleMinutes', {
      type: 'Number',
      default: 30,
      minValue: 1,
      description: 'A session with no append for this long is archived by the idle sweep.',
    });
    const tokenSecretArn = new CfnParameter(this, 'TokenSecretArn', {
      type: 'String',
      default: '',
      description:
        'ARN of an existing Secrets Manager secret holding the token-signing key (at least 32 bytes). Empty: the stack creates one.',
    });
    const embeddingsUrl = new CfnParameter(this, 'EmbeddingsUrl', {
      type: 'String',
      default: '',
      description:
        'An OpenAI-compatible embeddings endpoint (https://.../v1) for the nightly clusters; empty: the local TF-IDF, which sends nothing anywhere.',
    });
    const embeddingsModel = new CfnParameter(this, 'EmbeddingsModel', {
      type: 'String',
      default: 'text-embedding-3-small',
      description: "The embeddings endpoint's model.",
    });
    const longPollTimeoutMs = new CfnParameter(this, 'LongPollTimeoutMs', {
      type: 'Number',
      default: 20000,
      minValue: 1000,
      // Must stay under the 29 s API Gateway integration timeout, with room to answer.
      maxValue: 25000,
      description: 'How long a live=long-poll read waits for new data.',
    });
    // A parameter (not a context flag) so one synthesized template serves both choices,
    // as the SAM template does.
    const agentFunctionUrl = new CfnParameter(this, 'AgentFunctionUrl', {
      type: 'String',
      default: 'true',
      allowedValues: ['true', 'false'],
      description:
        'Also serve the Durable Streams API (the streams function) at a Lambda function URL (no per-request charge of its own, unlike the HTTP API): a cheaper way in for agents appending to sessions. Tokens are checked by the function either way.',
    });

    const createTokenSecret = new CfnCondition(this, 'CreateTokenSecret', {
      expression: Fn.conditionEquals(tokenSecretArn.valueAsString, ''),
    });
    const createAgentFunctionUrl = new CfnCondition(this, 'CreateAgentFunctionUrl', {
      expression: Fn.conditionEquals(agentFunctionUrl.valueAsString, 'true'),
    });

    // --- Storage -------------------------------------------------------------------------
    const sessions = named(
      new dynamodb.Table(this, 'SessionsTable', {
        partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
        sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        // Feeds the archiver (meta items and new log# records) and the dispatch function.
        stream: dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        encryption: dynamodb.TableEncryption.AWS_MANAGED,
        // The session log is the product's data: keep it if the stack goes.
        removalPolicy: RemovalPolicy.RETAIN,
        // No timeToLiveAttribute on purpose: the items' `ttl` is a stream's TTL duration,
        // not an epoch; DynamoDB TTL on it would delete live sessions at once.
      }),
      'SessionsTable',
    );
    // A tenant's score records newest first (sparse: only score items have spk/ssk).
    sessions.addGlobalSecondaryIndex({
      indexName: 'scores',
      partitionKey: { name: 'spk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'ssk', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
    // A tenant's streams and the subscriptions due for a sweep; keys only, so an append's
    // tail update costs the index nothing.
    sessions.addGlobalSecondaryIndex({
      indexName: 'keys',
      partitionKey: { name: 'kpk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'ksk', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    });

    const connections = named(
      new dynamodb.Table(this, 'ConnectionsTable', {
        partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
        sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
        billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
        // Epoch seconds; API Gateway closes connections after 2 h, so rows whose
        // $disconnect was missed still go away.
        timeToLiveAttribute: 'expires_at',
        pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
        encryption: dynamodb.TableEncryption.AWS_MANAGED,
        // Connections are transient: deleted with the stack, as in the SAM template.
        removalPolicy: RemovalPolicy.DESTROY,
      }),
      'ConnectionsTable',
    );

    const bucket = named(
      new s3.Bucket(this, 'Bucket', {
        encryption: s3.BucketEncryption.S3_MANAGED,
        blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
        objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycleRules: [
          {
            id: 'traces',
            prefix: 'traces/',
            transitions: [{ storageClass: s3.StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(30) }],
            expiration: Duration.days(traceRetentionDays.valueAsNumber),
          },
          // No expiry for blobs/: they are session data (claim checks), deleted with their session.
          { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
        ],
        // Archived traces outlive the stack.
        removalPolicy: RemovalPolicy.RETAIN,
      }),
      'Bucket',
    );
    // Object events go to EventBridge. Set on the L1: the L2's eventBridgeEnabled would add a
    // custom resource (and its Lambda) to do what this one property does.
    (bucket.node.defaultChild as s3.CfnBucket).notificationConfiguration = {
      eventBridgeConfiguration: { eventBridgeEnabled: true },
    };
    // TLS only. Written out rather than enforceSSL, whose principal is {"AWS": "*"}.
    bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DenyInsecureTransport',
        effect: iam.Effect.DENY,
        principals: [new iam.StarPrincipal()],
        actions: ['s3:*'],
        resources: [bucket.bucketArn, bucket.arnForObjects('*')],
        conditions: { Bool: { 'aws:SecureTransport': 'false' } },
      }),
    );
    named(bucket.policy!, 'BucketPolicy');

    const tokenSecret = named(
      new secretsmanager.Secret(this, 'TokenSecret', {
        description: 'agentwire token-signing key (HMAC); mint tokens with `agentwire token`.',
        generateSecretString: { passwordLength: 64, excludePunctuation: true },
      }),
      'TokenSecret',
    );
    (tokenSecret.node.defaultChild as secretsmanager.CfnSecret).cfnOptions.condition = createTokenSecret;
    const tokenSecretRef = Token.asString(
      Fn.conditionIf(createTokenSecret.logicalId, tokenSecret.secretArn, tokenSecretArn.valueAsString),
    );

    // Stream batches the dispatch function failed five times: kept 14 days. Their wakes are
    // not lost: leases run out and the sweep wakes again.
    const dispatchFailures = named(
      new sqs.Queue(this, 'DispatchFailures', {
        retentionPeriod: Duration.days(14),
        encryption: sqs.QueueEncryption.SQS_MANAGED,
      }),
      'DispatchFailures',
    );
    // Messages the judge failed five times: kept 14 days for a look and a redrive.
    const judgeFailures = named(
      new sqs.Queue(this, 'JudgeFailures', {
        retentionPeriod: Duration.days(14),
        encryption: sqs.QueueEncryption.SQS_MANAGED,
      }),
      'JudgeFailures',
    );
    const judgeQueue = named(
      new sqs.Queue(this, 'JudgeQueue', {
        // Six times the judge's timeout, as Lambda advises for SQS sources.
        visibilityTimeout: Duration.seconds(5400),
        retentionPeriod: Duration.days(4),
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        deadLetterQueue: { queue: judgeFailures, maxReceiveCount: 5 },
      }),
      'JudgeQueue',
    );

    // --- WebSocket API (L1: the L2 makes an integration and a permission per route) ------
    const webSocketApi = new apigwv2.CfnApi(this, 'WebSocketApi', {
      name: `${Aws.STACK_NAME}-ws`,
      protocolType: 'WEBSOCKET',
      routeSelectionExpression: '$request.body.action',
    });
    const wsEndpoint = `https://${webSocketApi.ref}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}/${stageName.valueAsString}`;
    const connectionsArn = (method: string) =>
      `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${webSocketApi.ref}/${stageName.valueAsString}/${method}/@connections/*`;

    // --- Functions -------------------------------------------------------------------------
    const sessionsIndex = (name: string) => `${sessions.tableArn}/index/${name}`;
    const objects = (prefix: string) => bucket.arnForObjects(`${prefix}/*`);

    const makeFunction = (spec: FunctionSpec): lambda.Function => {
      const shortName = spec.id.replace(/Function$/, '');
      // Made first, so Lambda never creates a group without retention.
      const logGroup = named(
        new logs.LogGroup(this, `${shortName}LogGroup`, {
          logGroupName: `/aws/lambda/${Aws.STACK_NAME}-${spec.id}`,
          retention: logRetentionDays.valueAsNumber,
          removalPolicy: RemovalPolicy.DESTROY,
        }),
        `${shortName}LogGroup`,
      );
      const inlinePolicies: Record<string, iam.PolicyDocument> = {
        [`${spec.id}RolePolicy0`]: new iam.PolicyDocument({ statements: spec.statements }),
      };
      for (const [name, statements] of Object.entries(spec.extraPolicies ?? {})) {
        inlinePolicies[name] = new iam.PolicyDocument({ statements });
      }
      // Inline policies only: grants would add a separate AWS::IAM::Policy per role.
      const role = named(
        new iam.Role(this, `${spec.id}Role`, {
          assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
          managedPolicies: ['service-role/AWSLambdaBasicExecutionRole', ...(spec.managedPolicies ?? [])].map((name) =>
            iam.ManagedPolicy.fromAwsManagedPolicyName(name),
          ),
          inlinePolicies,
        }),
        `${spec.id}Role`,
      );
      return named(
        new lambda.Function(this, spec.id, {
          description: spec.description,
          runtime: lambda.Runtime.PROVIDED_AL2023,
          handler: 'bootstrap',
          code: lambda.Code.fromAsset(path.join(props.bootstrapDir, spec.binary)),
          architecture: lambda.Architecture.custom(architecture.valueAsString),
          memorySize: spec.memorySize ?? 256,
          timeout: Duration.seconds(spec.timeout),
          reservedConcurrentExecutions: spec.reservedConcurrentExecutions,
          loggingFormat: lambda.LoggingFormat.JSON,
          logGroup,
          role,
          environment: {
            // What every function and job reads; the API functions add delivery and tokens.
            AGENTWIRE_SESSIONS_TABLE: sessions.tableName,
            AGENTWIRE_BUCKET: bucket.bucketName,
            RUST_LOG: 'info',
            ...spec.environment,
          },
        }),
        spec.id,
      );
    };

    const streamsFunction = makeFunction({
      id: 'StreamsFunction',
      binary: 'agentwire-streams',
      description: 'Durable Streams API (/v1/stream/*, with subscriptions) and /healthz; also at the function URL.',
      timeout: 30,
      environment: {
        AGENTWIRE_LONG_POLL_TIMEOUT_MS: longPollTimeoutMs.valueAsString,
        AGENTWIRE_CONNECTIONS_TABLE: connections.tableName,
        AGENTWIRE_TOKEN_SECRET_ARN: tokenSecretRef,
        AGENTWIRE_WS_ENDPOINT: wsEndpoint,
      },
      statements: [
        // Transactions are authorised per item action; there is no TransactWriteItems action.
        allow(
          'SessionLog',
          ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem', 'Query', 'ConditionCheckItem'].map((a) => `dynamodb:${a}`),
          [sessions.tableArn],
        ),
        allow(
          'Subscriptions',
          ['GetItem', 'Query', 'UpdateItem', 'DeleteItem', 'BatchWriteItem'].map((a) => `dynamodb:${a}`),
          [connections.tableArn],
        ),
        allow('SubscriptionCatalog', ['dynamodb:Query'], [sessionsIndex('keys')]),
        allow('StreamTails', ['dynamodb:BatchGetItem'], [sessions.tableArn]),
        allow('PushToClients', ['execute-api:ManageConnections'], ['POST', 'DELETE'].map(connectionsArn)),
        allow('Blobs', ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'], [objects('blobs')]),
        allow('TokenSecret', ['secretsmanager:GetSecretValue'], [tokenSecretRef]),
      ],
    });

    const httpFunction = makeFunction({
      id: 'HttpFunction',
      binary: 'agentwire-http',
      description:
        'OTLP/HTTP trace ingest (POST /v1/traces), the scores, grading (/v1/rubrics, /v1/queues) and evals (/v1/evals) APIs, the report pages and the grading page.',
      timeout: 30,
      environment: {
        AGENTWIRE_TOKEN_SECRET_ARN: tokenSecretRef,
      },
      statements: [
        allow('ReadScores', ['dynamodb:Query'], [sessionsIndex('scores')]),
        // Claims and submissions are transactions, authorised per item action.
        allow(
          'GradingStore',
          ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem', 'Query', 'ConditionCheckItem', 'BatchWriteItem'].map(
            (a) => `dynamodb:${a}`,
          ),
          [sessions.tableArn],
        ),
        allow('IngestTraces', ['s3:GetObject', 's3:PutObject'], [objects('traces')]),
        allow('GradingReadsTenantConfig', ['s3:GetObject'], [objects('config')]),
        allow('EvalDatasetsAndRuns', ['s3:GetObject', 's3:PutObject'], [objects('datasets'), objects('runs')]),
        allow('ReportPages', ['s3:GetObject'], [objects('reports')]),
        // Without ListBucket S3 answers a missing key with 403, not 404.
        allow('MissingTracesAreNotFound', ['s3:ListBucket'], [bucket.bucketArn]),
        allow('TokenSecret', ['secretsmanager:GetSecretValue'], [tokenSecretRef]),
      ],
    });
    const routeTargets: Record<HttpRouteTarget, lambda.Function> = {
      StreamsFunction: streamsFunction,
      HttpFunction: httpFunction,
    };

    const webSocketFunction = makeFunction({
      id: 'WebSocketFunction',
      binary: 'agentwire-websocket',
      description: "The WebSocket API's only integration ($connect checks the token).",
      timeout: 29,
      environment: {
        AGENTWIRE_CONNECTIONS_TABLE: connections.tableName,
        AGENTWIRE_TOKEN_SECRET_ARN: tokenSecretRef,
        AGENTWIRE_WS_ENDPOINT: wsEndpoint,
      },
      statements: [
        allow(
          'SessionLog',
          ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem', 'Query', 'ConditionCheckItem'].map((a) => `dynamodb:${a}`),
          [sessions.tableArn],
        ),
        allow(
          'Connections',
          ['GetItem', 'PutItem', 'DeleteItem', 'Query', 'BatchWriteItem', 'ConditionCheckItem'].map((a) => `dynamodb:${a}`),
          [connections.tableArn],
        ),
        allow('PushToClients', ['execute-api:ManageConnections'], ['POST', 'GET', 'DELETE'].map(connectionsArn)),
        // Replays read claim-checked appends; expiring a session deletes its blobs.
        allow('Blobs', ['s3:GetObject', 's3:DeleteObject'], [objects('blobs')]),
        allow('TokenSecret', ['secretsmanager:GetSecretValue'], [tokenSecretRef]),
      ],
    });

    const archiverFunction = makeFunction({
      id: 'ArchiverFunction',
      binary: 'agentwire-archiver',
      description: 'The archiver job: turns closed sessions (stream) and idle ones (schedule) into traces in S3.',
      timeout: 300,
      memorySize: 512,
      environment: { AGENTWIRE_IDLE_MINUTES: idleMinutes.valueAsString },
      // SAM adds it for a DynamoDB event source (stream reads).
      managedPolicies: ['service-role/AWSLambdaDynamoDBExecutionRole'],
      statements: [
        // Reads sessions; Update/DeleteItem keep its activity index (pk=activity).
        allow('SessionLog', ['GetItem', 'Query', 'UpdateItem', 'DeleteItem'].map((a) => `dynamodb:${a}`), [sessions.tableArn]),
        allow('WriteTraces', ['s3:PutObject'], [objects('traces')]),
        allow('ReadBlobs', ['s3:GetObject'], [objects('blobs')]),
      ],
    });

    const dispatchFunction = makeFunction({
      id: 'DispatchFunction',
      binary: 'agentwire-dispatch',
      description:
        'Durable Streams subscriptions: sends webhook wakes (stream of subscription items) and sweeps expired leases and due retries (schedule).',
      // A scheduled invocation sweeps for 55 s; a webhook answers within 10 s.
      timeout: 70,
      environment: {
        AGENTWIRE_CONNECTIONS_TABLE: connections.tableName,
        AGENTWIRE_TOKEN_SECRET_ARN: tokenSecretRef,
        AGENTWIRE_WS_ENDPOINT: wsEndpoint,
      },
      managedPolicies: ['service-role/AWSLambdaDynamoDBExecutionRole'],
      // What SAM adds for the stream source's on-failure queue.
      extraPolicies: {
        DispatchFunctionSubscriptionChangesSQSPolicy: [
          new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [dispatchFailures.queueArn] }),
        ],
      },
      statements: [
        allow(
          'SessionLog',
          ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'Query', 'ConditionCheckItem'].map(
            (a) => `dynamodb:${a}`,
          ),
          [sessions.tableArn],
        ),
        allow('DueSubscriptions', ['dynamodb:Query'], [sessionsIndex('keys')]),
        allow('Connections', ['Query', 'UpdateItem', 'DeleteItem', 'BatchWriteItem'].map((a) => `dynamodb:${a}`), [
          connections.tableArn,
        ]),
        // Removing an expired stream removes its claim-checked appends.
        allow('ExpiredBlobs', ['s3:DeleteObject'], [objects('blobs')]),
        allow('PushToClients', ['execute-api:ManageConnections'], ['POST', 'DELETE'].map(connectionsArn)),
        allow('TokenSecret', ['secretsmanager:GetSecretValue'], [tokenSecretRef]),
        allow('FailedBatches', ['sqs:SendMessage'], [dispatchFailures.queueArn]),
      ],
    });

    const clustersFunction = makeFunction({
      id: 'ClustersFunction',
      binary: 'agentwire-clusters',
      description:
        "Nightly clusters: clusters each tenant's traces of the day that ended, tracks clusters across nights, writes clusters/ and the report pages.",
      timeout: 900,
      // 1,769 MB is one full vCPU: clustering is CPU-bound.
      memorySize: 1769,
      // One invocation at a time: a night is never clustered twice at once.
      reservedConcurrentExecutions: 1,
      environment: {
        AGENTWIRE_EMBEDDINGS_URL: embeddingsUrl.valueAsString,
        AGENTWIRE_EMBEDDINGS_MODEL: embeddingsModel.valueAsString,
      },
      statements: [
        allow('GradingAndScores', ['dynamodb:GetItem', 'dynamodb:Query'], [sessions.tableArn, sessionsIndex('*')]),
        allow(
          'ReadArchive',
          ['s3:GetObject'],
          ['traces', 'scores', 'config', 'runs', 'clusters', 'reports'].map(objects),
        ),
        allow('ListArchive', ['s3:ListBucket'], [bucket.bucketArn]),
        allow('WriteClustersAndReports', ['s3:PutObject'], [objects('clusters'), objects('reports')]),
      ],
    });

    const evalsFunction = makeFunction({
      id: 'EvalsFunction',
      binary: 'agentwire-evals',
      description:
        "Evals: starts each tenant's scheduled evals once a day (config/tenant=<t>/evals.toml) and carries out queued and interrupted runs, through sessions to the agent under test.",
      // A run cut by the timeout is resumed by the next invocation from its last item.
      timeout: 900,
      memorySize: 512,
      // One invocation at a time: a run is never carried out twice at once.
      reservedConcurrentExecutions: 1,
      environment: {
        AGENTWIRE_CONNECTIONS_TABLE: connections.tableName,
        AGENTWIRE_TOKEN_SECRET_ARN: tokenSecretRef,
        AGENTWIRE_WS_ENDPOINT: wsEndpoint,
      },
      statements: [
        allow(
          'SessionLog',
          ['GetItem', 'PutItem', 'UpdateItem', 'DeleteItem', 'Query', 'ConditionCheckItem'].map((a) => `dynamodb:${a}`),
          [sessions.tableArn],
        ),
        allow('Subscribers', ['Query', 'UpdateItem', 'DeleteItem', 'BatchWriteItem'].map((a) => `dynamodb:${a}`), [
          connections.tableArn,
        ]),
        allow('PushToClients', ['execute-api:ManageConnections'], ['POST', 'DELETE'].map(connectionsArn)),
        allow('EvalObjects', ['s3:GetObject', 's3:PutObject'], [objects('datasets'), objects('runs'), objects('traces')]),
        allow('Configuration', ['s3:GetObject'], [objects('config'), objects('blobs')]),
        allow('Listing', ['s3:ListBucket'], [bucket.bucketArn]),
        allow('TokenSecret', ['secretsmanager:GetSecretValue'], [tokenSecretRef]),
      ],
    });

    const scorerFunction = makeFunction({
      id: 'ScorerFunction',
      binary: 'agentwire-scorer',
      description:
        'The scorer job: scores each new trace (S3 notifications on traces/) and re-scores yesterday nightly.',
      // The nightly re-score reads every trace of a day.
      timeout: 900,
      memorySize: 512,
      statements: [
        allow(
          'ScoreIndex',
          ['Query', 'PutItem', 'DeleteItem', 'BatchWriteItem'].map((a) => `dynamodb:${a}`),
          [sessions.tableArn, sessionsIndex('scores')],
        ),
        allow('ReadTracesAndConfig', ['s3:GetObject'], [objects('traces'), objects('config')]),
        // The re-score lists traces/dt=<day>/; it also makes a missing config/ a 404.
        allow('ListTraces', ['s3:ListBucket'], [bucket.bucketArn]),
        allow('WriteScores', ['s3:PutObject'], [objects('scores')]),
      ],
    });

    const judgeFunction = makeFunction({
      id: 'JudgeFunction',
      binary: 'agentwire-judge',
      description:
        'The LLM judge: judges each scored trace (SQS, fed by S3 events on scores/) within each tenant\'s budget.',
      timeout: 900,
      memorySize: 512,
      // SAM adds it for an SQS event source (receive and delete messages).
      managedPolicies: ['service-role/AWSLambdaSQSQueueExecutionRole'],
      statements: [
        allow(
          'ScoreIndexAndBudget',
          ['GetItem', 'Query', 'PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem'].map((a) => `dynamodb:${a}`),
          [sessions.tableArn, sessionsIndex('scores')],
        ),
        allow('ReadTracesAndConfig', ['s3:GetObject'], [objects('traces'), objects('config')]),
        allow('ListTraces', ['s3:ListBucket'], [bucket.bucketArn]),
        allow('WriteJudgements', ['s3:PutObject'], [objects('judge')]),
        // Any foundation model or inference profile; cross-region profiles route elsewhere.
        allow(
          'Bedrock',
          ['bedrock:InvokeModel'],
          [
            `arn:${Aws.PARTITION}:bedrock:*::foundation-model/*`,
            `arn:${Aws.PARTITION}:bedrock:*:${Aws.ACCOUNT_ID}:inference-profile/*`,
            `arn:${Aws.PARTITION}:bedrock:${Aws.REGION}:${Aws.ACCOUNT_ID}:application-inference-profile/*`,
          ],
        ),
        // Keys of OpenAI-compatible endpoints, under one prefix.
        allow(
          'EndpointKeys',
          ['secretsmanager:GetSecretValue'],
          [`arn:${Aws.PARTITION}:secretsmanager:${Aws.REGION}:${Aws.ACCOUNT_ID}:secret:agentwire/judge/*`],
        ),
      ],
    });

    // --- Event sources ---------------------------------------------------------------------
    // EventSourceMapping, not DynamoEventSource/SqsEventSource: those grant stream and queue
    // access in a separate policy, where SAM uses the managed policies above.
    named(
      new lambda.EventSourceMapping(this, 'ArchiverFunctionSessionChanges', {
        target: archiverFunction,
        eventSourceArn: sessions.tableStreamArn!,
        startingPosition: lambda.StartingPosition.LATEST,
        batchSize: 100,
        maxBatchingWindow: Duration.seconds(5),
        bisectBatchOnError: true,
        retryAttempts: 5,
        // Meta items and new log# records; other data, producer and activity items stay out.
        filters: [
          { pattern: '{"dynamodb":{"Keys":{"sk":{"S":["meta"]}}}}' },
          { pattern: '{"eventName":["INSERT"],"dynamodb":{"Keys":{"pk":{"S":[{"prefix":"log#"}]}}}}' },
        ],
      }),
      'ArchiverFunctionSessionChanges',
    );
    named(
      new lambda.EventSourceMapping(this, 'DispatchFunctionSubscriptionChanges', {
        target: dispatchFunction,
        eventSourceArn: sessions.tableStreamArn!,
        startingPosition: lambda.StartingPosition.LATEST,
        batchSize: 100,
        maxBatchingWindow: Duration.seconds(0),
        parallelizationFactor: 10,
        bisectBatchOnError: true,
        retryAttempts: 5,
        // A destination without SqsDlq's grant: the role's inline policies cover it.
        onFailure: { bind: () => ({ destination: dispatchFailures.queueArn }) },
        filters: [{ pattern: '{"dynamodb":{"Keys":{"pk":{"S":[{"prefix":"sub#"}]}}}}' }],
      }),
      'DispatchFunctionSubscriptionChanges',
    );
    named(
      new lambda.EventSourceMapping(this, 'JudgeFunctionScored', {
        target: judgeFunction,
        eventSourceArn: judgeQueue.queueArn,
        batchSize: 10,
        maxBatchingWindow: Duration.seconds(5),
        // A message the judge could not settle is retried alone.
        reportBatchItemFailures: true,
        // Bounds the calls in flight against the tenants' endpoints.
        maxConcurrency: 5,
      }),
      'JudgeFunctionScored',
    );

    const schedule = (fn: lambda.Function, event: string, rate: Duration, description: string) => {
      const rule = named(
        new events.Rule(this, `${fn.node.id}${event}`, { schedule: events.Schedule.rate(rate), description }),
        `${fn.node.id}${event}`,
      );
      nameNewPermission(this, `${fn.node.id}${event}Permission`, () => rule.addTarget(new targets.LambdaFunction(fn)));
    };
    schedule(archiverFunction, 'IdleSweep', Duration.minutes(15), 'Archive sessions idle for IdleMinutes.');
    schedule(dispatchFunction, 'Sweep', Duration.minutes(1), 'Wake work whose lease ran out and send due webhook retries.');
    schedule(
      clustersFunction,
      'Schedule',
      Duration.hours(1),
      "Cluster the day that ended (each tenant's night once) and write its report pages.",
    );
    schedule(evalsFunction, 'Schedule', Duration.minutes(1), 'Start due scheduled evals; carry out queued and interrupted runs.');
    schedule(scorerFunction, 'Rescore', Duration.days(1), 'Re-score every trace of the day that ended (UTC).');

    const objectCreated = (prefix: string): events.EventPattern => ({
      source: ['aws.s3'],
      detailType: ['Object Created'],
      detail: { bucket: { name: [bucket.bucketName] }, object: { key: [{ prefix }] } },
    });
    // Through EventBridge, not S3 notifications: those would make the bucket depend on the
    // function, which depends on the bucket.
    const newTraces = named(
      new events.Rule(this, 'ScorerFunctionNewTraces', { eventPattern: objectCreated('traces/') }),
      'ScorerFunctionNewTraces',
    );
    nameNewPermission(this, 'ScorerFunctionNewTracesPermission', () =>
      newTraces.addTarget(
        new targets.LambdaFunction(scorerFunction, { retryAttempts: 10, maxEventAge: Duration.seconds(86400) }),
      ),
    );

    // Each scores/ object goes to the judge's queue. A bare target: targets.SqsQueue would
    // grant more than sqs:SendMessage in the queue's policy.
    const scoredRule = named(
      new events.Rule(this, 'ScoredRule', {
        description: 'Each scores/ object the scorer writes goes to the judge\'s queue.',
        eventPattern: objectCreated('scores/'),
        targets: [{ bind: () => ({ id: 'judge-queue', arn: judgeQueue.queueArn }) }],
      }),
      'ScoredRule',
    );
    const judgeQueuePolicy = named(new sqs.QueuePolicy(this, 'JudgeQueuePolicy', { queues: [judgeQueue] }), 'JudgeQueuePolicy');
    judgeQueuePolicy.document.addStatements(
      new iam.PolicyStatement({
        sid: 'FromScoredRule',
        principals: [new iam.ServicePrincipal('events.amazonaws.com')],
        actions: ['sqs:SendMessage'],
        resources: [judgeQueue.queueArn],
        conditions: { ArnEquals: { 'aws:SourceArn': scoredRule.ruleArn } },
      }),
    );

    // --- HTTP API: the OpenAPI body SAM writes (the L2 would add a route resource per route) --
    const integrationUri = (fn: lambda.Function) =>
      `arn:${Aws.PARTITION}:apigateway:${Aws.REGION}:lambda:path/2015-03-31/functions/${fn.functionArn}/invocations`;
    const paths: Record<string, Record<string, unknown>> = {};
    for (const route of HTTP_ROUTES) {
      const parameters = [...route.path.matchAll(/\{([^}]+)\}/g)].map((m) => ({ required: true, name: m[1], in: 'path' }));
      paths[route.path] ??= {};
      paths[route.path][route.method === 'ANY' ? 'x-amazon-apigateway-any-method' : route.method.toLowerCase()] = {
        'x-amazon-apigateway-integration': {
          httpMethod: 'POST',
          type: 'aws_proxy',
          uri: integrationUri(routeTargets[route.fn]),
          payloadFormatVersion: '2.0',
          ...(route.timeoutInMillis ? { timeoutInMillis: route.timeoutInMillis } : {}),
        },
        responses: {},
        ...(parameters.length ? { parameters } : {}),
      };
    }
    const httpApi = new apigwv2.CfnApi(this, 'HttpApi', {
      failOnWarnings: true,
      body: {
        openapi: '3.0.1',
        info: { version: '1.0', title: Aws.STACK_NAME },
        paths,
        // A preflight that an ANY route catches reaches the function, whose CORS layer answers it.
        'x-amazon-apigateway-cors': CORS,
      },
    });
    // The $default stage keeps URLs at /v1/stream/<name>.
    new apigwv2.CfnStage(this, 'HttpApiApiGatewayDefaultStage', {
      apiId: httpApi.ref,
      stageName: '$default',
      autoDeploy: true,
      defaultRouteSettings: { throttlingBurstLimit: 500, throttlingRateLimit: 1000 },
    });
    for (const route of HTTP_ROUTES) {
      const method = route.method === 'ANY' ? '*' : route.method;
      const pathGlob = route.path.replace(/\{[^}]+\}/g, '*');
      const fn = routeTargets[route.fn];
      fn.addPermission(`${route.id}Permission`, {
        principal: new iam.ServicePrincipal('apigateway.amazonaws.com'),
        action: 'lambda:InvokeFunction',
        sourceArn: `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${httpApi.ref}/*/${method}${pathGlob}`,
      });
      named(fn.node.findChild(`${route.id}Permission`), `${route.fn}${route.id}Permission`);
    }

    // --- WebSocket integration, routes and stage ---------------------------------------------
    const integration = new apigwv2.CfnIntegration(this, 'WebSocketIntegration', {
      apiId: webSocketApi.ref,
      integrationType: 'AWS_PROXY',
      // Lambda integrations of WebSocket APIs must use POST.
      integrationMethod: 'POST',
      integrationUri: `arn:${Aws.PARTITION}:apigateway:${Aws.REGION}:lambda:path/2015-03-31/functions/${webSocketFunction.functionArn}/invocations`,
    });
    // Every route goes to the one function, which answers through PostToConnection.
    const routes = WEBSOCKET_ROUTES.map(
      ([routeId, routeKey]) =>
        new apigwv2.CfnRoute(this, routeId, {
          apiId: webSocketApi.ref,
          routeKey,
          // The function checks the token (query ?token= or Authorization) itself.
          ...(routeKey === '$connect' ? { authorizationType: 'NONE' } : {}),
          target: `integrations/${integration.ref}`,
        }),
    );
    const webSocketStage = new apigwv2.CfnStage(this, 'WebSocketStage', {
      apiId: webSocketApi.ref,
      stageName: stageName.valueAsString,
      autoDeploy: true,
      defaultRouteSettings: { throttlingBurstLimit: 500, throttlingRateLimit: 1000 },
    });
    // A WebSocket API cannot be deployed before it has routes.
    routes.forEach((route) => webSocketStage.addResourceDependency(route));
    webSocketFunction.addPermission('WebSocketInvokePermission', {
      principal: new iam.ServicePrincipal('apigateway.amazonaws.com'),
      action: 'lambda:InvokeFunction',
      sourceArn: `arn:${Aws.PARTITION}:execute-api:${Aws.REGION}:${Aws.ACCOUNT_ID}:${webSocketApi.ref}/${stageName.valueAsString}/*`,
    });
    named(webSocketFunction.node.findChild('WebSocketInvokePermission'), 'WebSocketInvokePermission');

    // --- Function URL (L1: conditional on AgentFunctionUrl) ----------------------------------
    // The function checks every request's token (AuthType NONE means no IAM signature). A
    // public URL needs both permissions, the second limited to calls through the URL.
    const functionUrl = new lambda.CfnUrl(this, 'StreamsFunctionUrl', {
      targetFunctionArn: streamsFunction.functionArn,
      authType: 'NONE',
      invokeMode: 'BUFFERED',
    });
    const urlPermission = new lambda.CfnPermission(this, 'StreamsFunctionUrlPermission', {
      action: 'lambda:InvokeFunctionUrl',
      functionName: streamsFunction.functionName,
      principal: '*',
      functionUrlAuthType: 'NONE',
    });
    const urlInvokePermission = new lambda.CfnPermission(this, 'StreamsFunctionUrlInvokePermission', {
      action: 'lambda:InvokeFunction',
      functionName: streamsFunction.functionName,
      principal: '*',
      invokedViaFunctionUrl: true,
    });
    for (const resource of [functionUrl, urlPermission, urlInvokePermission]) {
      resource.cfnOptions.condition = createAgentFunctionUrl;
    }

    // --- Outputs -----------------------------------------------------------------------------
    new CfnOutput(this, 'HttpApiUrl', {
      description: 'Durable Streams base URL; streams are at /v1/stream/<name>, health at /healthz.',
      value: `https://${httpApi.ref}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}`,
    });
    // Outputs that share a parameter's name get other construct IDs and SAM's logical IDs.
    const agentFunctionUrlOutput = new CfnOutput(this, 'AgentFunctionUrlOutput', {
      condition: createAgentFunctionUrl,
      description:
        "The Durable Streams API of HttpApiUrl (/v1/stream/*, /healthz) at the streams function's URL (no API Gateway request charge).",
      value: functionUrl.attrFunctionUrl,
    });
    named(agentFunctionUrlOutput, 'AgentFunctionUrl');
    new CfnOutput(this, 'WebSocketUrl', {
      description: 'WebSocket URL for clients (connect with ?token=<token>).',
      value: `wss://${webSocketApi.ref}.execute-api.${Aws.REGION}.${Aws.URL_SUFFIX}/${stageName.valueAsString}`,
    });
    new CfnOutput(this, 'ManagementApiUrl', {
      description: 'API Gateway management endpoint used for PostToConnection.',
      value: wsEndpoint,
    });
    new CfnOutput(this, 'BucketName', {
      description:
        "Trace archive (traces/), score records (scores/), tenants' scoring configuration (config/) and large-payload store (blobs/).",
      value: bucket.bucketName,
    });
    new CfnOutput(this, 'SessionsTableName', { value: sessions.tableName });
    new CfnOutput(this, 'ConnectionsTableName', { value: connections.tableName });
    // False alarms of synth's template validation: the If guards the conditional secret, and
    // TokenSecretArn names a secret rather than holding one.
    Validations.of(this).acknowledge(
      { id: 'CloudFormation-Validate::W1001', reason: 'TokenSecret is referenced only under Fn::If on its own condition' },
      { id: 'CloudFormation-Validate::W2509', reason: 'TokenSecretArn is an ARN, not a password' },
    );
    named(
      new CfnOutput(this, 'TokenSecretArnOutput', { description: 'Secret holding the token-signing key.', value: tokenSecretRef }),
      'TokenSecretArn',
    );
  }
}
