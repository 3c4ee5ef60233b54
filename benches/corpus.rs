//! Seeded generator of a realistic CloudTrail mix, shared by the criterion
//! bench and `cargo run --release --example gen-corpus`.
//!
//! The mix (by share of records): EC2/management reads and writes with nested
//! requestParameters, S3 and KMS data events, console sign-ins, AssumeRole,
//! AccessDenied errors and IAM changes. Field shapes follow the AWS
//! CloudTrail User Guide's examples.
#![allow(dead_code)]

use std::fmt::Write;

/// Small, dependency-free PRNG (xorshift64*), so a seed always gives the same corpus.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            let _ = write!(s, "{:016x}", self.next());
        }
        s.truncate(n);
        s
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
    }
}

const REGIONS: &[&str] = &["us-east-1", "us-east-2", "eu-west-1", "ap-northeast-1"];
const ACCOUNTS: &[&str] = &["111122223333", "444455556666", "777788889999"];
const AGENTS: &[&str] = &[
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.1.79 exe/x86_64.amzn.2023 prompt/off command/ec2.describe-instances",
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#6.1.79 md/arch#x86_64 lang/python#3.11.8 cfg/retry-mode#legacy Botocore/1.34.69",
    "terraform-provider-aws/5.42.0 (+https://registry.terraform.io) aws-sdk-go-v2/1.26.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
];

/// `n` upper-case hex digits that depend only on `parts`: an identifier that
/// stays the same for as long as what it names (a user, a role, a session's
/// credentials), unlike the per-event ones the record stream draws.
fn stable_hex(parts: &[&str], n: usize) -> String {
    // FNV-1a over the parts, then splitmix64 for as many digits as wanted.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut s = String::with_capacity(n + 16);
    while s.len() < n {
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let _ = write!(s, "{:016X}", z ^ (z >> 31));
    }
    s.truncate(n);
    s
}

/// Role session names: people, EC2 instances and CI jobs.
fn session_name(i: u64) -> String {
    match i {
        0..=5 => ["alice", "bob", "carol", "dave", "erin", "frank"][i as usize].to_string() + "@example.com",
        6..=29 => format!("i-0{}", stable_hex(&["instance", &i.to_string()], 16).to_lowercase()),
        _ => format!("github-actions-{}", 1000 + i),
    }
}

/// The identity of a call at `secs`. Principals are stable, as in an
/// account: an IAM user keeps its principal ID and one of its two long-term
/// access keys; a role session keeps its temporary key for the hour its
/// credentials last, and an account's roles run 48 sessions at a time. So,
/// as in a real trail, a key makes many calls (a per-record key would make
/// every credential column unique, which no real trail is).
fn identity(r: &mut Rng, account: &str, secs: u64, out: &mut String) {
    if r.below(3) == 0 {
        let user = r.pick(&["alice", "bob", "carol", "deploy-bot"]);
        let key = if r.below(4) == 0 { "2" } else { "1" };
        let _ = write!(
            out,
            r#""userIdentity":{{"type":"IAMUser","principalId":"AIDA{}","arn":"arn:aws:iam::{account}:user/{user}","accountId":"{account}","accessKeyId":"AKIA{}","userName":"{user}"}}"#,
            stable_hex(&[account, user], 17),
            stable_hex(&[account, user, key], 16),
        );
    } else {
        let role = r.pick(&["Admin", "ReadOnly", "ci-deployer", "eks-node"]);
        let session = session_name(r.below(48));
        // Credentials are reissued hourly, each session's at its own minute
        // (written as eventTime is, so the two agree).
        let offset = u64::from_str_radix(&stable_hex(&[account, role, &session], 4), 16).unwrap() % 3600;
        let issued = (secs - offset) / 3600 * 3600 + offset;
        let (h, m, s) = ((issued / 3600) % 24, (issued / 60) % 60, issued % 60);
        let day = 1 + (issued / 86_400) % 28;
        let _ = write!(
            out,
            r#""userIdentity":{{"type":"AssumedRole","principalId":"AROA{id}:{session}","arn":"arn:aws:sts::{account}:assumed-role/{role}/{session}","accountId":"{account}","accessKeyId":"ASIA{}","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"AROA{id}","arn":"arn:aws:iam::{account}:role/{role}","accountId":"{account}","userName":"{role}"}},"webIdFederationData":{{}},"attributes":{{"creationDate":"2024-03-{day:02}T{h:02}:{m:02}:{s:02}Z","mfaAuthenticated":"false"}}}}}}"#,
            stable_hex(&[account, role, &session, &issued.to_string()], 16),
            id = stable_hex(&[account, role], 17),
        );
    }
}

/// Appends one CloudTrail record (compact JSON) to `out`, from any account
/// and region (a Kafka feed mixes them).
pub fn record(r: &mut Rng, seq: u64, out: &mut String) {
    let account = r.pick(ACCOUNTS);
    let region = r.pick(REGIONS);
    record_in(r, seq, account, region, out)
}

/// Seconds since the epoch of record `seq`: 50 events a second from
/// 2024-03-01T08:00Z.
pub fn record_secs(seq: u64) -> u64 {
    1_709_280_000 + seq / 50
}

/// Appends one CloudTrail record of `account` in `region`.
pub fn record_in(r: &mut Rng, seq: u64, account: &str, region: &str, out: &mut String) {
    let secs = record_secs(seq);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let day = 1 + (secs / 86_400) % 28;
    let kind = r.below(100);
    out.push('{');
    let _ = write!(out, r#""eventVersion":"1.09","#);
    identity(r, account, secs, out);
    let _ = write!(out, r#","eventTime":"2024-03-{day:02}T{h:02}:{m:02}:{s:02}Z","#);
    let ip = format!("203.0.113.{}", r.below(250));
    let agent = r.pick(AGENTS);
    match kind {
        0..=29 => {
            let name = r.pick(&["DescribeInstances", "DescribeSecurityGroups", "DescribeVolumes"]);
            let _ = write!(
                out,
                r#""eventSource":"ec2.amazonaws.com","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"{agent}","requestParameters":{{"instancesSet":{{}},"filterSet":{{"items":[{{"name":"tag:Environment","valueSet":{{"items":[{{"value":"production"}}]}}}},{{"name":"instance-state-name","valueSet":{{"items":[{{"value":"running"}}]}}}}]}},"maxResults":{}}},"responseElements":null,"requestID":"{}","eventID":"{}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management","tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"ec2.{region}.amazonaws.com"}}"#,
                5 + r.below(995),
                r.uuid(),
                r.uuid()
            );
        }
        30..=41 => {
            let _ = write!(
                out,
                r#""eventSource":"ec2.amazonaws.com","eventName":"RunInstances","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"{agent}","requestParameters":{{"instancesSet":{{"items":[{{"imageId":"ami-0{}","minCount":1,"maxCount":1}}]}},"instanceType":"m7g.large","blockDeviceMapping":{{}},"monitoring":{{"enabled":false}},"disableApiTermination":false,"clientToken":"{}","tagSpecificationSet":{{"items":[{{"resourceType":"instance","tags":[{{"key":"Name","value":"web-{}"}},{{"key":"team","value":"platform"}}]}}]}}}},"responseElements":{{"requestId":"{}","reservationId":"r-0{}","ownerId":"{account}","instancesSet":{{"items":[{{"instanceId":"i-0{}","imageId":"ami-0{}","instanceState":{{"code":0,"name":"pending"}},"privateDnsName":"ip-10-0-1-{}.ec2.internal","amiLaunchIndex":0,"productCodes":{{}},"instanceType":"m7g.large","launchTime":1709280000000,"placement":{{"availabilityZone":"{region}a","tenancy":"default"}},"monitoring":{{"state":"disabled"}},"subnetId":"subnet-0{}","vpcId":"vpc-0{}","privateIpAddress":"10.0.1.{}"}}]}}}},"requestID":"{}","eventID":"{}","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management""#,
                r.hex(16),
                r.uuid(),
                r.below(100),
                r.uuid(),
                r.hex(16),
                r.hex(16),
                r.hex(16),
                r.below(250),
                r.hex(16),
                r.hex(16),
                r.below(250),
                r.uuid(),
                r.uuid()
            );
        }
        42..=63 => {
            let name = r.pick(&["GetObject", "PutObject", "HeadObject"]);
            let bucket = r.pick(&["prod-artifacts", "audit-logs-archive", "customer-uploads"]);
            let key = format!("data/2024/03/{}/part-{:05}.parquet", r.below(28), r.below(99_999));
            let _ = write!(
                out,
                r#""eventSource":"s3.amazonaws.com","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"[{agent}]","requestParameters":{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","key":"{key}"}},"responseElements":null,"additionalEventData":{{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":0,"bytesTransferredOut":{},"AuthenticationMethod":"AuthHeader","x-amz-id-2":"{}","SSEApplied":"SSE_KMS"}},"requestID":"{}","eventID":"{}","readOnly":true,"resources":[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::{bucket}/{key}"}},{{"accountId":"{account}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket}"}}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"{account}","eventCategory":"Data""#,
                r.below(10_000_000),
                r.hex(56),
                r.hex(16).to_uppercase(),
                r.uuid()
            );
        }
        64..=75 => {
            let name = r.pick(&["Decrypt", "GenerateDataKey", "Encrypt"]);
            let _ = write!(
                out,
                r#""eventSource":"kms.amazonaws.com","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"s3.amazonaws.com","userAgent":"s3.amazonaws.com","requestParameters":{{"encryptionContext":{{"aws:s3:arn":"arn:aws:s3:::prod-artifacts/data/{}"}},"encryptionAlgorithm":"SYMMETRIC_DEFAULT","keyId":"arn:aws:kms:{region}:{account}:key/{}"}},"responseElements":null,"requestID":"{}","eventID":"{}","readOnly":true,"resources":[{{"accountId":"{account}","type":"AWS::KMS::Key","ARN":"arn:aws:kms:{region}:{account}:key/{}"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","sharedEventID":"{}","vpcEndpointId":"vpce-0{}","eventCategory":"Management""#,
                r.hex(12),
                r.uuid(),
                r.uuid(),
                r.uuid(),
                r.uuid(),
                r.uuid(),
                r.hex(16)
            );
        }
        76..=83 => {
            let ok = r.below(10) != 0;
            let _ = write!(
                out,
                r#""eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"{ip}","userAgent":"{}","requestParameters":null,"responseElements":{{"ConsoleLogin":"{}"}},"additionalEventData":{{"LoginTo":"https://console.aws.amazon.com/console/home","MobileVersion":"No","MFAUsed":"{}"}},"eventID":"{}","readOnly":false,"eventType":"AwsConsoleSignIn","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management"{}"#,
                AGENTS[3],
                if ok { "Success" } else { "Failure" },
                if r.below(2) == 0 { "Yes" } else { "No" },
                r.uuid(),
                if ok { "" } else { r#","errorMessage":"Failed authentication""# }
            );
        }
        84..=91 => {
            let _ = write!(
                out,
                r#""eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"{agent}","requestParameters":{{"roleArn":"arn:aws:iam::{account}:role/ci-deployer","roleSessionName":"github-actions-{}","durationSeconds":3600}},"responseElements":{{"credentials":{{"accessKeyId":"ASIA{}","sessionToken":"IQoJb3JpZ2luX2VjE{}","expiration":"Mar 1, 2024, 9:00:00 AM"}},"assumedRoleUser":{{"assumedRoleId":"AROA{}:github-actions","arn":"arn:aws:sts::{account}:assumed-role/ci-deployer/github-actions"}}}},"requestID":"{}","eventID":"{}","readOnly":true,"resources":[{{"accountId":"{account}","type":"AWS::IAM::Role","ARN":"arn:aws:iam::{account}:role/ci-deployer"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","sharedEventID":"{}","eventCategory":"Management""#,
                r.below(1000),
                r.hex(16).to_uppercase(),
                r.hex(120),
                r.hex(17).to_uppercase(),
                r.uuid(),
                r.uuid(),
                r.uuid()
            );
        }
        92..=96 => {
            let name = r.pick(&["ListSecrets", "GetSecretValue", "PutBucketPolicy"]);
            let _ = write!(
                out,
                r#""eventSource":"secretsmanager.amazonaws.com","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"{agent}","errorCode":"AccessDenied","errorMessage":"User: arn:aws:sts::{account}:assumed-role/ReadOnly/x is not authorized to perform: secretsmanager:{name} because no identity-based policy allows the secretsmanager:{name} action","requestParameters":null,"responseElements":null,"requestID":"{}","eventID":"{}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management""#,
                r.uuid(),
                r.uuid()
            );
        }
        _ => {
            let name = r.pick(&["CreateUser", "AttachRolePolicy", "CreateAccessKey", "DeleteRole"]);
            let _ = write!(
                out,
                r#""eventSource":"iam.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"{ip}","userAgent":"{agent}","requestParameters":{{"userName":"svc-{}","roleName":"svc-role-{}","policyArn":"arn:aws:iam::aws:policy/ReadOnlyAccess"}},"responseElements":{{"user":{{"path":"/","userName":"svc-{}","userId":"AIDA{}","arn":"arn:aws:iam::{account}:user/svc","createDate":"Mar 1, 2024, 8:00:00 AM"}}}},"requestID":"{}","eventID":"{}","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management""#,
                r.below(100),
                r.below(100),
                r.below(100),
                r.hex(17).to_uppercase(),
                r.uuid(),
                r.uuid()
            );
        }
    }
    out.push('}');
}

/// A CloudTrail log file: as CloudTrail delivers them, one account and one
/// region a file.
pub struct LogFile {
    pub account: &'static str,
    pub region: &'static str,
    /// `{"Records":[...]}`
    pub body: String,
}

/// A log file of `n` records from `first_seq` on, of a random account and region.
pub fn log_file(r: &mut Rng, first_seq: u64, n: u64) -> LogFile {
    let (account, region) = (r.pick(ACCOUNTS), r.pick(REGIONS));
    let mut s = String::with_capacity(n as usize * 1600);
    s.push_str("{\"Records\":[");
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        record_in(r, first_seq + i, account, region, &mut s);
    }
    s.push_str("]}");
    LogFile { account, region, body: s }
}

/// Appends one Kubernetes audit event (log backend line): Metadata level for
/// most, RequestResponse with a request object for writes.
pub fn k8s_event(r: &mut Rng, seq: u64, out: &mut String) {
    let verbs = ["get", "list", "watch", "create", "update", "patch", "delete"];
    let verb = verbs[r.below(verbs.len() as u64) as usize];
    let resource = r.pick(&["pods", "deployments", "configmaps", "services", "leases", "events"]);
    let ns = r.pick(&["default", "kube-system", "payments", "platform"]);
    let user = r.pick(&[
        "system:serviceaccount:kube-system:replicaset-controller",
        "system:node:ip-10-0-1-17.ec2.internal",
        "alice@example.com",
        "system:kube-scheduler",
    ]);
    let secs = 1_714_557_600 + seq / 200;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let write = matches!(verb, "create" | "update" | "patch");
    let _ = write!(
        out,
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"{}","auditID":"{}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{ns}/{resource}","verb":"{verb}","user":{{"username":"{user}","uid":"{}","groups":["system:authenticated"]}},"sourceIPs":["10.0.{}.{}"],"userAgent":"kube-controller-manager/v1.29.3 (linux/amd64) kubernetes/6813625","objectRef":{{"resource":"{resource}","namespace":"{ns}","name":"web-{}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":{}}},"#,
        if write { "RequestResponse" } else { "Metadata" },
        r.uuid(),
        r.uuid(),
        r.below(255),
        r.below(255),
        r.below(1000),
        if r.below(20) == 0 { 403 } else { 200 },
    );
    if write {
        let _ = write!(
            out,
            r#""requestObject":{{"kind":"ConfigMap","apiVersion":"v1","metadata":{{"name":"web-{}","namespace":"{ns}","labels":{{"app":"web","tier":"frontend"}}}},"data":{{"LOG_LEVEL":"info","FEATURE_FLAGS":"a,b,c"}}}},"#,
            r.below(1000)
        );
    }
    let _ = write!(
        out,
        r#""requestReceivedTimestamp":"2024-05-01T{h:02}:{m:02}:{s:02}.{:06}Z","stageTimestamp":"2024-05-01T{h:02}:{m:02}:{s:02}.{:06}Z","annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:controller\""}}}}"#,
        r.below(1_000_000),
        r.below(1_000_000)
    );
}

/// Appends one GitHub webhook delivery (REST API shape) with a trimmed but
/// realistic payload: pull requests, reviews, pushes and workflow runs.
pub fn github_delivery(r: &mut Rng, seq: u64, out: &mut String) {
    let secs = 1_714_557_600 + seq / 20;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let t = format!("2024-05-01T{h:02}:{m:02}:{s:02}Z");
    let repo = format!(
        r#"{{"id":{},"node_id":"R_kgDO{}","name":"svc","full_name":"acme/svc-{}","private":true,"owner":{{"login":"acme","id":9919,"type":"Organization"}},"html_url":"https://github.com/acme/svc","default_branch":"main","updated_at":"{t}"}}"#,
        100_000 + r.below(50),
        r.hex(8),
        r.below(50)
    );
    let sender = format!(
        r#"{{"login":"dev{}","id":{},"node_id":"U_{}","type":"User"}}"#,
        r.below(40),
        5000 + r.below(40),
        r.hex(8)
    );
    let n = 1 + r.below(900);
    let pr = format!(
        r#"{{"id":{},"number":{n},"state":"open","title":"Change {n}","html_url":"https://github.com/acme/svc/pull/{n}","user":{{"login":"dev{}","id":{}}},"draft":false,"head":{{"ref":"feature-{n}","sha":"{}"}},"base":{{"ref":"main","sha":"{}"}},"merged":false,"merge_commit_sha":null,"requested_reviewers":[{{"login":"dev{}"}}],"updated_at":"{t}","body":"Fixes #{}"}}"#,
        1_000_000 + n,
        r.below(40),
        5000 + r.below(40),
        r.hex(40),
        r.hex(40),
        r.below(40),
        r.below(500)
    );
    let (event, payload) = match r.below(4) {
        0 => (
            "pull_request",
            format!(
                r#"{{"action":"synchronize","number":{n},"pull_request":{pr},"repository":{repo},"sender":{sender}}}"#
            ),
        ),
        1 => (
            "pull_request_review",
            format!(
                r#"{{"action":"submitted","review":{{"id":{},"user":{{"login":"dev{}","id":{}}},"state":"approved","commit_id":"{}","submitted_at":"{t}"}},"pull_request":{pr},"repository":{repo},"sender":{sender}}}"#,
                r.below(1_000_000),
                r.below(40),
                5000 + r.below(40),
                r.hex(40)
            ),
        ),
        2 => (
            "push",
            format!(
                r#"{{"ref":"refs/heads/main","before":"{}","after":"{}","created":false,"deleted":false,"forced":false,"commits":[{{"id":"{}","message":"Update deps\n\nCo-authored-by: dev{} <dev@example.com>","timestamp":"{t}","author":{{"name":"dev","email":"dev@example.com","username":"dev{}"}}}}],"head_commit":{{"id":"{}","timestamp":"{t}"}},"pusher":{{"name":"dev{}"}},"repository":{repo},"sender":{sender}}}"#,
                r.hex(40),
                r.hex(40),
                r.hex(40),
                r.below(40),
                r.below(40),
                r.hex(40),
                r.below(40)
            ),
        ),
        _ => (
            "workflow_run",
            format!(
                r#"{{"action":"completed","workflow_run":{{"id":{},"name":"CI","path":".github/workflows/ci.yml","event":"push","head_branch":"main","head_sha":"{}","run_attempt":1,"conclusion":"{}","updated_at":"{t}"}},"repository":{repo},"sender":{sender}}}"#,
                r.below(1_000_000_000),
                r.hex(40),
                if r.below(10) == 0 { "failure" } else { "success" }
            ),
        ),
    };
    let guid = r.uuid();
    let _ = write!(
        out,
        r#"{{"id":{},"guid":"{guid}","delivered_at":"{t}","redelivery":false,"duration":0.31,"status":"OK","status_code":200,"event":"{event}","request":{{"headers":{{"X-GitHub-Event":"{event}","X-GitHub-Delivery":"{guid}"}},"payload":{payload}}}}}"#,
        r.below(u64::MAX / 2)
    );
}

/// NDJSON of `n` records made by `gen`.
pub fn ndjson(r: &mut Rng, n: u64, make: fn(&mut Rng, u64, &mut String)) -> String {
    let mut s = String::new();
    for i in 0..n {
        make(r, i, &mut s);
        s.push('\n');
    }
    s
}
