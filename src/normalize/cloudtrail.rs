//! CloudTrail record → OCSF API Activity (6003), Authentication (3002) or
//! Account Change (3001), following `schemas/README.md` (after the AWS/OCSF
//! mappings in ocsf/examples and Amazon Security Lake's output).
//!
//! One pass over the record's top-level members picks out the fields; values
//! are written straight into the partition's column batch. Whatever has no
//! OCSF home is kept in `unmapped`, so nothing in the record is lost.

use std::net::IpAddr;

use super::cols::{Cols, UserCols};
use super::time::{event_day, parse_rfc3339_ms};
use super::{Ctx, Rejected, row};
use crate::batch::columns::ColumnBatch;
use crate::batch::{Batcher, partition_value};
use crate::deadletter::Reason;
use crate::decode::json::Val;
use crate::ocsf::{Class, OCSF_VERSION, status_caption};
use crate::redact::{Keep, write_part};

/// Top-level CloudTrail fields trailship maps. The discriminant is a bit in
/// the "consumed" mask that decides what goes to `unmapped`.
#[derive(Clone, Copy)]
enum K {
    EventVersion,
    UserIdentity,
    EventTime,
    EventSource,
    EventName,
    AwsRegion,
    SourceIp,
    UserAgent,
    ErrorCode,
    ErrorMessage,
    RequestParameters,
    ResponseElements,
    AdditionalEventData,
    RequestId,
    EventId,
    EventType,
    ApiVersion,
    RecipientAccountId,
    SharedEventId,
    VpcEndpointId,
    EventCategory,
    Resources,
    TlsDetails,
    ReadOnly,
}

const NK: usize = 24;
/// CloudTrail records have 15-25 members.
const KINDS: usize = 32;

fn key(k: &str) -> Option<K> {
    Some(match k {
        "eventVersion" => K::EventVersion,
        "userIdentity" => K::UserIdentity,
        "eventTime" => K::EventTime,
        "eventSource" => K::EventSource,
        "eventName" => K::EventName,
        "awsRegion" => K::AwsRegion,
        "sourceIPAddress" => K::SourceIp,
        "userAgent" => K::UserAgent,
        "errorCode" => K::ErrorCode,
        "errorMessage" => K::ErrorMessage,
        "requestParameters" => K::RequestParameters,
        "responseElements" => K::ResponseElements,
        "additionalEventData" => K::AdditionalEventData,
        "requestID" => K::RequestId,
        "eventID" => K::EventId,
        "eventType" => K::EventType,
        "apiVersion" => K::ApiVersion,
        "recipientAccountId" => K::RecipientAccountId,
        "sharedEventID" => K::SharedEventId,
        "vpcEndpointId" => K::VpcEndpointId,
        "eventCategory" => K::EventCategory,
        "resources" => K::Resources,
        "tlsDetails" => K::TlsDetails,
        "readOnly" => K::ReadOnly,
        _ => return None,
    })
}

/// The fields of one record, as tape references.
struct Rec<'t, 'i> {
    f: [Option<Val<'t, 'i>>; NK],
    /// The record's own key strings: they locate the values in its text.
    keys: [&'i str; NK],
    /// `key` of each of the record's first [`KINDS`] members, in order, so
    /// that `unmapped` need not match their names again.
    kinds: [Option<K>; KINDS],
    /// Fields successfully mapped; the rest goes to `unmapped`.
    consumed: u32,
    /// Fields present with a type the mapping cannot use.
    wrong_types: Vec<&'static str>,
}

impl<'t, 'i> Rec<'t, 'i> {
    fn val(&self, k: K) -> Option<Val<'t, 'i>> {
        self.f[k as usize].filter(|v| !v.is_null())
    }

    /// A string field; marks it consumed. Other types are left for `unmapped`
    /// and reported as a repair, never silently dropped.
    fn str(&mut self, k: K, name: &'static str) -> Option<&'i str> {
        let v = self.val(k)?;
        match v.as_str() {
            Some(s) => {
                self.consumed |= 1 << k as u32;
                Some(s)
            }
            None => {
                if !self.wrong_types.contains(&name) {
                    self.wrong_types.push(name);
                }
                None
            }
        }
    }

    fn consume(&mut self, k: K) {
        self.consumed |= 1 << k as u32;
    }
}

/// The members a CloudTrail record is recognised by (see [`super::Signs`]).
#[derive(Clone, Copy, Default)]
pub(super) struct Marks<'t, 'i> {
    pub(super) version: Option<Val<'t, 'i>>,
    pub(super) source: Option<Val<'t, 'i>>,
    pub(super) name: Option<Val<'t, 'i>>,
    pub(super) type_: Option<Val<'t, 'i>>,
}

impl<'t, 'i> Marks<'t, 'i> {
    /// Looked up one at a time, as far as [`Marks::looks_like_cloudtrail`]
    /// asks: a record starts with `eventVersion`, and has `eventSource` a
    /// few members on (`eventType` is far down it).
    pub(super) fn of(root: &Val<'t, 'i>) -> Self {
        let mut m = Marks { version: root.get("eventVersion"), ..Default::default() };
        if m.version.is_some() {
            m.source = root.get("eventSource");
            if m.source.is_none() {
                m.name = root.get("eventName");
                if m.name.is_none() {
                    m.type_ = root.get("eventType");
                }
            }
        }
        m
    }

    pub(super) fn looks_like_cloudtrail(&self) -> bool {
        self.version.is_some() && (self.source.is_some() || self.name.is_some() || self.type_.is_some())
    }
}

/// EventBridge delivers CloudTrail records under `detail`; `detail_type` is
/// the record's `detail-type`.
pub fn eventbridge_detail<'t, 'i>(root: Val<'t, 'i>, detail_type: Option<&str>) -> Option<Val<'t, 'i>> {
    detail_type.filter(|dt| dt.contains("CloudTrail")).and_then(|_| root.get("detail")).filter(|d| d.is_object())
}

pub struct CloudTrail {
    cols: [Cols; Class::ALL.len()],
}

impl Default for CloudTrail {
    fn default() -> Self {
        let cols = Class::ALL.map(|c| Cols::resolve(&ColumnBatch::new(crate::ocsf::dataset_columns(c))));
        CloudTrail { cols }
    }
}

const ACCOUNT_CHANGE: &[&str] = &[
    "CreateUser",
    "UpdateUser",
    "DeleteUser",
    "CreateRole",
    "UpdateRole",
    "DeleteRole",
    "CreateGroup",
    "UpdateGroup",
    "DeleteGroup",
    "CreateLoginProfile",
    "UpdateLoginProfile",
    "DeleteLoginProfile",
    "CreateAccessKey",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "CreateInstanceProfile",
    "DeleteInstanceProfile",
    "CreateServiceLinkedRole",
    "DeleteServiceLinkedRole",
    "CreateVirtualMFADevice",
    "DeleteVirtualMFADevice",
    "AttachUserPolicy",
    "AttachGroupPolicy",
    "AttachRolePolicy",
    "DetachUserPolicy",
    "DetachGroupPolicy",
    "DetachRolePolicy",
    "PutUserPolicy",
    "PutGroupPolicy",
    "PutRolePolicy",
    "DeleteUserPolicy",
    "DeleteGroupPolicy",
    "DeleteRolePolicy",
    "PutUserPermissionsBoundary",
    "PutRolePermissionsBoundary",
    "DeleteUserPermissionsBoundary",
    "DeleteRolePermissionsBoundary",
    "AddUserToGroup",
    "RemoveUserFromGroup",
    "AddRoleToInstanceProfile",
    "RemoveRoleFromInstanceProfile",
    "ChangePassword",
    "PasswordUpdated",
    "EnableMFADevice",
    "DeactivateMFADevice",
    "ResyncMFADevice",
    "FinalizeSmsMfaRegistration",
    "UpdateAssumeRolePolicy",
    "DeletePolicy",
    "CreateAccountAlias",
    "DeleteAccountAlias",
    "UpdateAccountPasswordPolicy",
    "DeleteAccountPasswordPolicy",
    "UpdateAccountName",
    "UpdateAccountEmailAddress",
    "TagUser",
    "UntagUser",
    "TagRole",
    "UntagRole",
    "TagInstanceProfile",
    "UntagInstanceProfile",
    "UpdateRoleDescription",
    "UpdateSigningCertificate",
    "UploadSigningCertificate",
];

const AUTHENTICATION: &[&str] = &[
    "ConsoleLogin",
    "ExternalIdPDirectoryLogin",
    "CheckMfa",
    "CredentialChallenge",
    "CredentialVerification",
    "UserAuthentication",
    "AssumeRole",
    "AssumeRoleWithSAML",
    "AssumeRoleWithWebIdentity",
];

fn route(name: &str, source: &str) -> Class {
    let iam_like = matches!(source, "iam.amazonaws.com" | "signin.amazonaws.com");
    if iam_like && ACCOUNT_CHANGE.contains(&name) {
        Class::AccountChange
    } else if AUTHENTICATION.contains(&name) || source == "signin.amazonaws.com" {
        Class::Authentication
    } else {
        Class::ApiActivity
    }
}

/// `name` starts with the CamelCase word `verb` (so `Add` matches
/// `AddTags`, not `AddressBook`).
fn starts_with_word(name: &str, verb: &str) -> bool {
    name.starts_with(verb)
        && name[verb.len()..].chars().next().is_none_or(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

fn api_activity_id(name: &str, read_only: Option<bool>) -> i32 {
    const VERBS: &[(&[&str], i32)] = &[
        (&["Create", "Run", "Generate", "Allocate", "Import"], 1),
        (&["Get", "List", "Describe", "Search", "Lookup", "BatchGet"], 2),
        (
            &[
                "Update",
                "Put",
                "Modify",
                "Set",
                "Attach",
                "Detach",
                "Associate",
                "Disassociate",
                "Add",
                "Remove",
                "Tag",
                "Untag",
                "Enable",
                "Disable",
                "Start",
                "Stop",
                "Register",
                "Deregister",
                "Reboot",
            ],
            3,
        ),
        (&["Delete", "Terminate", "Revoke", "Release"], 4),
    ];
    for (verbs, id) in VERBS {
        if verbs.iter().any(|v| starts_with_word(name, v)) {
            return *id;
        }
    }
    if read_only == Some(true) { 2 } else { 99 }
}

fn account_change_activity_id(name: &str, rec: &Rec<'_, '_>) -> i32 {
    match name {
        "CreateUser"
        | "CreateRole"
        | "CreateServiceLinkedRole"
        | "CreateLoginProfile"
        | "CreateInstanceProfile"
        | "CreateGroup" => 1,
        "DeleteUser"
        | "DeleteRole"
        | "DeleteServiceLinkedRole"
        | "DeleteLoginProfile"
        | "DeleteInstanceProfile"
        | "DeleteGroup" => 6,
        "ChangePassword" | "UpdateLoginProfile" | "PasswordUpdated" => 3,
        "EnableMFADevice" | "CreateVirtualMFADevice" | "FinalizeSmsMfaRegistration" => 10,
        "DeactivateMFADevice" | "DeleteVirtualMFADevice" => 11,
        "UpdateAccessKey" => match rec.val(K::RequestParameters).and_then(|p| p.get_str("status")) {
            Some("Inactive") => 5,
            Some("Active") => 2,
            _ => 99,
        },
        n if n.starts_with("Attach") && n.ends_with("Policy") => 7,
        n if n.starts_with("Put") && (n.ends_with("Policy") || n.ends_with("PermissionsBoundary")) => 7,
        n if n.starts_with("Detach") && n.ends_with("Policy") => 8,
        n if n.starts_with("Delete")
            && (n.ends_with("Policy") && n != "DeletePolicy" || n.ends_with("PermissionsBoundary")) =>
        {
            8
        }
        _ => 99,
    }
}

/// OCSF `user.type_id` for a CloudTrail `userIdentity.type`.
fn user_type_id(t: &str) -> i32 {
    match t {
        "IAMUser" => 1,
        "Root" => 2,
        "AWSService" => 4,
        _ => 99,
    }
}

impl CloudTrail {
    /// `envelope` is the record as received (an EventBridge envelope, say),
    /// `root` the CloudTrail record inside it.
    pub fn normalize(
        &mut self,
        envelope: Val<'_, '_>,
        root: Val<'_, '_>,
        ctx: &Ctx<'_>,
        out: &mut Batcher,
    ) -> Result<Class, Rejected> {
        let mut rec = Rec { f: [None; NK], keys: [""; NK], kinds: [None; KINDS], consumed: 0, wrong_types: Vec::new() };
        for (i, (name, v)) in root.entries().enumerate() {
            let k = key(name);
            if let Some(k) = k {
                rec.f[k as usize] = Some(v);
                rec.keys[k as usize] = name;
            }
            if i < KINDS {
                rec.kinds[i] = k;
            }
        }

        let category = rec.str(K::EventCategory, "eventCategory");
        if category == Some("Insight") || rec.val(K::EventType).and_then(|v| v.as_str()) == Some("AwsCloudTrailInsight")
        {
            return Err(Rejected {
                reason: Reason::UnsupportedEventType,
                detail: "CloudTrail Insights events are findings, not API calls".into(),
            });
        }
        // Required fields: without them the record cannot be placed in time
        // or described, so it is a dead letter with the reason.
        let name = required_str(&mut rec, K::EventName, "eventName")?;
        let source = required_str(&mut rec, K::EventSource, "eventSource")?;
        let time_str = required_str(&mut rec, K::EventTime, "eventTime")?;
        let time = parse_rfc3339_ms(time_str).ok_or_else(|| Rejected {
            reason: Reason::InvalidTimestamp,
            detail: format!("eventTime {time_str:?} is not an RFC 3339 timestamp"),
        })?;
        let class = route(name, source);
        let region = rec.str(K::AwsRegion, "awsRegion");
        // Read once: the actor, a sign-in's user and the partition's account all use it.
        let ident = rec.val(K::UserIdentity).filter(|v| v.is_object()).map(Ident::of);
        let recipient = rec.str(K::RecipientAccountId, "recipientAccountId");
        let account = recipient.or_else(|| str_of(ident.and_then(|i| i.account)));
        let batch = out.get(class, partition_value(region), partition_value(account), event_day(time));
        let c = &self.cols[class.index()];

        // Classification.
        let read_only = rec.val(K::ReadOnly).and_then(|v| v.as_bool().or_else(|| v.as_str().map(|s| s == "true")));
        let activity_id = match class {
            Class::ApiActivity => api_activity_id(name, read_only),
            Class::Authentication => match name {
                "ConsoleLogin"
                | "AssumeRole"
                | "AssumeRoleWithSAML"
                | "AssumeRoleWithWebIdentity"
                | "ExternalIdPDirectoryLogin"
                | "UserAuthentication" => 1,
                _ => 99,
            },
            Class::AccountChange => account_change_activity_id(name, &rec),
            Class::EntityManagement | Class::GroupManagement => unreachable!("route() never picks {class:?}"),
        };
        let error_code = rec.str(K::ErrorCode, "errorCode");
        let error_message = rec.str(K::ErrorMessage, "errorMessage");
        // Sign-in events report their outcome as responseElements.<eventName>.
        let console_result = (source == "signin.amazonaws.com")
            .then(|| {
                rec.val(K::ResponseElements)
                    .and_then(|r| r.get_str(name))
                    .or_else(|| root.get("serviceEventDetails").and_then(|d| d.get_str(name)))
            })
            .flatten();
        let status_id = match console_result {
            Some("Success") => 1,
            Some("Failure") => 2,
            _ if error_code.is_some() => 2,
            _ => 1,
        };

        row::header(batch, c, class, activity_id, name, time);
        batch.i32(c.status_id, status_id);
        batch.str(c.status, status_caption(status_id));
        if let Some(code) = error_code {
            batch.str(c.status_code, code);
            batch.str(c.api_response_error, code);
        }
        if let Some(msg) = error_message {
            batch.str(c.status_detail, msg);
            batch.str(c.api_response_message, msg);
        }

        // metadata
        batch.str(c.md_version, OCSF_VERSION);
        batch.str(c.md_product_name, "CloudTrail");
        batch.str(c.md_product_vendor, "AWS");
        if let Some(v) = rec.str(K::EventVersion, "eventVersion") {
            batch.str(c.md_product_version, v);
        }
        if let Some(cat) = category {
            batch.str(c.md_feature_name, cat);
            batch.str(c.md_log_name, cat);
        }
        if let Some(id) = rec.str(K::EventId, "eventID") {
            batch.str(c.md_uid, id);
            batch.str(c.md_original_event_uid, id);
        }
        if let Some(id) = rec.str(K::SharedEventId, "sharedEventID") {
            batch.str(c.md_correlation_uid, id);
        }
        if let Some(t) = rec.str(K::EventType, "eventType") {
            batch.str(c.md_event_code, t);
        }
        batch.str(c.md_log_source, ctx.source_file);
        batch.str(c.md_original_time, time_str);
        batch.list_str(c.md_profiles, c.md_profile, ["cloud", "datetime"]);

        // cloud
        batch.str(c.cloud_provider, "AWS");
        if let Some(r) = region {
            batch.str(c.cloud_region, r);
        }
        if let Some(a) = recipient {
            batch.str(c.cloud_account_uid, a);
            batch.i32(c.cloud_account_type_id, 10);
            batch.str(c.cloud_account_type, "AWS Account");
        }

        // actor
        let mut ident_consumed = 0u16;
        if let Some(id) = &ident {
            rec.consume(K::UserIdentity);
            let extra = rec.val(K::AdditionalEventData);
            ident_consumed = write_actor(batch, c, id, extra);
        }
        if let Some(id) = rec.str(K::RequestId, "requestID") {
            batch.str(c.api_request_uid, id);
        }

        // api
        batch.str(c.api_operation, name);
        batch.str(c.api_service_name, source);
        if let Some(v) = rec.str(K::ApiVersion, "apiVersion") {
            batch.str(c.api_version, v);
        }
        if let Some(p) = rec.val(K::RequestParameters) {
            rec.consume(K::RequestParameters);
            batch.json_member(c.api_request_data, rec.keys[K::RequestParameters as usize], &p, ctx.source);
        }
        if let Some(r) = rec.val(K::ResponseElements) {
            rec.consume(K::ResponseElements);
            batch.json_member(c.api_response_data, rec.keys[K::ResponseElements as usize], &r, ctx.source);
        }

        // endpoints and http
        if let Some(ip) = rec.str(K::SourceIp, "sourceIPAddress") {
            if ip.parse::<IpAddr>().is_ok() {
                batch.str(c.src.ip, ip);
            } else {
                // AWS services call as `ec2.amazonaws.com`, or "AWS Internal".
                batch.str(c.src.domain, ip);
            }
        }
        if let Some(v) = rec.str(K::VpcEndpointId, "vpcEndpointId") {
            batch.str(c.src.uid, v);
        }
        if let Some(ua) = rec.str(K::UserAgent, "userAgent") {
            batch.str(c.http_user_agent, ua);
        }
        if let Some(host) = rec.val(K::TlsDetails).and_then(|t| t.get_str("clientProvidedHostHeader")) {
            batch.str(c.dst.hostname, host);
        }

        // class specifics
        match class {
            Class::ApiActivity => {
                if let (Some(rc), Some(res)) = (&c.resources, rec.val(K::Resources)) {
                    rec.consume(K::Resources);
                    batch.list_begin(rc.list);
                    for r in res.elements() {
                        if let Some(arn) = r.get_str("ARN") {
                            batch.str(rc.uid, arn);
                        }
                        if let Some(t) = r.get_str("type") {
                            batch.str(rc.type_, t);
                        }
                        if let Some(a) = r.get_str("accountId") {
                            batch.str(rc.owner_account_uid, a);
                        }
                        batch.item_end(rc.list);
                    }
                    batch.list_end(rc.list);
                }
            }
            Class::Authentication => {
                let a = c.auth.as_ref().expect("authentication columns");
                let resp = rec.val(K::ResponseElements);
                let params = rec.val(K::RequestParameters);
                let extra = rec.val(K::AdditionalEventData);
                batch.str(a.service_name, source);
                if name.starts_with("AssumeRole") {
                    if let Some(p) = params {
                        if let Some(arn) = p.get_str("roleArn") {
                            batch.str(a.user.uid, arn);
                        }
                        if let Some(n) = p.get_str("roleSessionName") {
                            batch.str(a.user.name, n);
                        }
                    }
                    if let Some(r) = resp {
                        let aru = r.get("assumedRoleUser");
                        if let Some(arn) = aru.and_then(|u| u.get_str("arn")) {
                            batch.str(a.session.uid, arn);
                        }
                        if let Some(id) = aru.and_then(|u| u.get_str("assumedRoleId")) {
                            batch.str(a.session.uid_alt, id);
                        }
                        let creds = r.get("credentials");
                        if let Some(k) = creds.and_then(|cr| cr.get_str("accessKeyId")) {
                            batch.str(a.session.credential_uid, k);
                        }
                        if let Some(t) = creds.and_then(|cr| cr.get_str("expiration")).and_then(parse_rfc3339_ms) {
                            batch.i64(a.session.expiration_time, t);
                            batch.i64(a.session.expiration_time_dt, t);
                        }
                        let issuer = r.get_str("issuer").or_else(|| r.get_str("provider"));
                        if let Some(i) = issuer {
                            batch.str(a.session.issuer, i);
                        }
                    }
                    let (pid, pname) = match name {
                        "AssumeRoleWithSAML" => (5, "SAML"),
                        "AssumeRoleWithWebIdentity" => (4, "OpenID"),
                        _ => (99, "Other"),
                    };
                    batch.i32(a.auth_protocol_id, pid);
                    batch.str(a.auth_protocol, pname);
                } else {
                    // Console and other sign-ins: the subject is the caller.
                    if let Some(id) = &ident {
                        write_user(batch, &a.user, id, rec.val(K::AdditionalEventData));
                    }
                    if name == "ConsoleLogin" {
                        batch.i32(a.auth_protocol_id, 99);
                        batch.str(a.auth_protocol, "Other");
                        batch.i32(a.logon_type_id, 2);
                        batch.str(a.logon_type, "Interactive");
                        batch.bool(a.is_remote, true);
                    }
                }
                if let Some(e) = extra {
                    if let Some(mfa) = e.get_str("MFAUsed") {
                        batch.bool(a.is_mfa, mfa == "Yes");
                    }
                    if let Some(to) = e.get_str("LoginTo") {
                        batch.str(c.dst.svc_name, to);
                        batch.str(c.http_url_string, to);
                    }
                }
            }
            Class::AccountChange => {
                let a = c.account_change.as_ref().expect("account change columns");
                let resp = rec.val(K::ResponseElements);
                let params = rec.val(K::RequestParameters);
                let changed = resp.and_then(|r| r.get("user").or_else(|| r.get("role")).filter(|v| v.is_object()));
                if let Some(u) = changed {
                    if let Some(arn) = nonempty(u.get_str("arn")) {
                        batch.str(a.user.uid, arn);
                    }
                    if let Some(id) = nonempty(u.get_str("userId").or_else(|| u.get_str("roleId"))) {
                        batch.str(a.user.uid_alt, id);
                    }
                }
                // The name the caller asked for; PasswordUpdated and friends
                // change the caller's own account.
                let name = params
                    .and_then(|p| p.get_str("userName").or_else(|| p.get_str("roleName")))
                    .or_else(|| changed.and_then(|u| u.get_str("userName").or_else(|| u.get_str("roleName"))))
                    .or_else(|| str_of(ident.and_then(|i| i.user_name)));
                if let Some(n) = nonempty(name) {
                    batch.str(a.user.name, n);
                } else if !batch.is_written(a.user.uid)
                    && let Some(arn) = nonempty(str_of(ident.and_then(|i| i.arn)))
                {
                    batch.str(a.user.uid, arn);
                }
                if let Some(acct) = recipient {
                    batch.str(a.user.account_uid, acct);
                }
                if let Some(p) = params {
                    let arn = p.get_str("policyArn");
                    let pname = p.get_str("policyName");
                    if arn.is_some() || pname.is_some() {
                        batch.list_begin(a.policies);
                        if let Some(v) = arn {
                            batch.str(a.policy_uid, v);
                        }
                        if let Some(v) = pname {
                            batch.str(a.policy_name, v);
                        }
                        batch.item_end(a.policies);
                        batch.list_end(a.policies);
                    }
                }
            }
            Class::EntityManagement | Class::GroupManagement => {}
        }

        // unmapped: every member not consumed above, verbatim (and redacted).
        let unmapped_member = |i: usize, k: &str, v: &Val<'_, '_>| -> Option<bool> {
            let kk = if i < KINDS { rec.kinds[i] } else { key(k) };
            let mapped = kk.is_some_and(|kk| rec.consumed & (1 << kk as u32) != 0);
            match kk {
                // userIdentity members with no OCSF home (sessionContext, ...).
                Some(K::UserIdentity) if mapped => {
                    v.entries().any(|(ik, iv)| ident_member_left(ik, &iv, ident_consumed)).then_some(true)
                }
                _ if mapped => None,
                // A known field's null says no more than its null column.
                Some(_) if v.is_null() => None,
                _ => Some(false),
            }
        };
        // Where the first member left unmapped is: the row has no `unmapped` without one.
        if let Some(from) = root.entries().enumerate().position(|(i, (k, v))| unmapped_member(i, k, &v).is_some()) {
            batch.json_with(c.unmapped, |buf, red, stats, tokens| {
                // userIdentity and its sessionContext objects lose only what
                // `write_actor` mapped.
                let mut keep = |path: &[&str], i: usize, k: &str, v: &Val<'_, '_>| match path {
                    [] => match if i < from { None } else { unmapped_member(i, k, v) } {
                        None => Keep::Nothing,
                        Some(false) => Keep::All,
                        Some(true) => Keep::Part,
                    },
                    ["userIdentity"] if !ident_member_left(k, v, ident_consumed) => Keep::Nothing,
                    ["userIdentity"] if k == "sessionContext" && ident_consumed & SESSION_BITS != 0 => Keep::Part,
                    ["userIdentity", "sessionContext"] if !context_member_left(k, v, ident_consumed) => Keep::Nothing,
                    ["userIdentity", "sessionContext"]
                        if v.entries().any(|(m, _)| session_bit(k, m) & ident_consumed != 0) =>
                    {
                        Keep::Part
                    }
                    ["userIdentity", "sessionContext", object] if session_bit(object, k) & ident_consumed != 0 => {
                        Keep::Nothing
                    }
                    _ => Keep::All,
                };
                write_part(red, &root, &mut keep, ctx.source, buf, stats, tokens);
            });
        }
        let notes: Vec<String> = rec.wrong_types.iter().map(|w| format!("wrong_type:{w}")).collect();
        let notes: Vec<&str> = notes.iter().map(String::as_str).collect();
        row::finish(batch, c, ctx, &envelope, &notes);
        Ok(class)
    }
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

fn required_str<'i>(rec: &mut Rec<'_, 'i>, k: K, name: &'static str) -> Result<&'i str, Rejected> {
    match rec.val(k) {
        None => Err(Rejected { reason: Reason::MissingField, detail: format!("required field {name} is missing") }),
        Some(v) => match v.as_str() {
            Some(s) => {
                rec.consume(k);
                Ok(s)
            }
            None => Err(Rejected {
                reason: Reason::WrongFieldType,
                detail: format!("{name} must be a string, found {}", v.type_name()),
            }),
        },
    }
}

/// Members of `userIdentity.sessionContext` objects that `write_actor` maps,
/// by object and name, with their bits beside [`ident_key_bit`]'s. What is
/// mapped is left out of `unmapped`, as Amazon Security Lake leaves it out.
const SESSION_MAPPED: [(&str, &str, u16); 5] = [
    ("sessionIssuer", "arn", 1 << 10),
    ("sessionIssuer", "userName", 1 << 11),
    ("attributes", "creationDate", 1 << 12),
    ("attributes", "mfaAuthenticated", 1 << 13),
    ("webIdFederationData", "federatedProvider", 1 << 14),
];
const SESSION_BITS: u16 = 0b11111 << 10;

fn session_bit(object: &str, k: &str) -> u16 {
    SESSION_MAPPED.iter().find(|(o, m, _)| *m == k && *o == object).map_or(0, |(_, _, bit)| *bit)
}

/// Whether `unmapped` keeps something of `userIdentity` member `k`: it is
/// not mapped, or it is `sessionContext` and not everything in it is.
fn ident_member_left(k: &str, v: &Val<'_, '_>, consumed: u16) -> bool {
    if ident_key_bit(k) & consumed != 0 {
        return false;
    }
    if k != "sessionContext" || !v.is_object() || consumed & SESSION_BITS == 0 || v.entries().next().is_none() {
        return true;
    }
    v.entries().any(|(ck, cv)| context_member_left(ck, &cv, consumed))
}

/// Whether `unmapped` keeps something of `sessionContext` member `k`: an
/// object whose every member was mapped goes with them (an empty one stays:
/// nothing of it was mapped).
fn context_member_left(k: &str, v: &Val<'_, '_>, consumed: u16) -> bool {
    !v.is_object() || v.entries().next().is_none() || v.entries().any(|(m, _)| session_bit(k, m) & consumed == 0)
}

/// Bits of the userIdentity members mapped by `write_actor`.
fn ident_key_bit(k: &str) -> u16 {
    match k {
        "onBehalfOf" => 256,
        "credentialId" => 512,
        "type" => 1,
        "principalId" => 2,
        "arn" => 4,
        "accountId" => 8,
        "accessKeyId" => 16,
        "userName" => 32,
        "invokedBy" => 64,
        "identityProvider" => 128,
        _ => 0,
    }
}

/// The members of a `userIdentity` that `write_user` and `write_actor` read,
/// found in one pass over it rather than a lookup each (the first of a
/// repeated key, as [`Val::get`] finds it).
#[derive(Default, Clone, Copy)]
struct Ident<'t, 'i> {
    type_: Option<Val<'t, 'i>>,
    principal: Option<Val<'t, 'i>>,
    arn: Option<Val<'t, 'i>>,
    account: Option<Val<'t, 'i>>,
    key_id: Option<Val<'t, 'i>>,
    user_name: Option<Val<'t, 'i>>,
    on_behalf: Option<Val<'t, 'i>>,
    credential_id: Option<Val<'t, 'i>>,
    invoked_by: Option<Val<'t, 'i>>,
    idp: Option<Val<'t, 'i>>,
    issuer: Option<Val<'t, 'i>>,
    attributes: Option<Val<'t, 'i>>,
    web_id: Option<Val<'t, 'i>>,
}

impl<'t, 'i> Ident<'t, 'i> {
    fn of(id: Val<'t, 'i>) -> Self {
        fn first<'t, 'i>(slot: &mut Option<Val<'t, 'i>>, v: Val<'t, 'i>) {
            slot.get_or_insert(v);
        }
        let mut x = Ident::default();
        let mut context = None;
        for (k, v) in id.entries() {
            match k {
                "type" => first(&mut x.type_, v),
                "principalId" => first(&mut x.principal, v),
                "arn" => first(&mut x.arn, v),
                "accountId" => first(&mut x.account, v),
                "accessKeyId" => first(&mut x.key_id, v),
                "userName" => first(&mut x.user_name, v),
                "onBehalfOf" => first(&mut x.on_behalf, v),
                "credentialId" => first(&mut x.credential_id, v),
                "invokedBy" => first(&mut x.invoked_by, v),
                "identityProvider" => first(&mut x.idp, v),
                "sessionContext" => first(&mut context, v),
                _ => {}
            }
        }
        if let Some(ctx) = context {
            for (k, v) in ctx.entries() {
                match k {
                    "sessionIssuer" => first(&mut x.issuer, v),
                    "attributes" => first(&mut x.attributes, v),
                    "webIdFederationData" => first(&mut x.web_id, v),
                    _ => {}
                }
            }
        }
        x
    }
}

fn str_of<'i>(v: Option<Val<'_, 'i>>) -> Option<&'i str> {
    v.and_then(|v| v.as_str())
}

/// Maps a `userIdentity` to an OCSF user; `extra` is additionalEventData,
/// where sign-in events name Identity Center users.
fn write_user<'i>(batch: &mut ColumnBatch, u: &UserCols, id: &Ident<'_, 'i>, extra: Option<Val<'_, '_>>) -> u16 {
    let mut consumed = 0;
    let mut take = |v: Option<Val<'_, 'i>>, k: &str| -> Option<&'i str> {
        let v = str_of(v);
        if v.is_some() {
            consumed |= ident_key_bit(k);
        }
        v
    };
    // Empty identifiers (console sign-ins send `"accessKeyId": ""`) are absent.
    let t = nonempty(take(id.type_, "type"));
    let principal = nonempty(take(id.principal, "principalId"));
    let arn = nonempty(take(id.arn, "arn"));
    let account = nonempty(take(id.account, "accountId"));
    let key_id = nonempty(take(id.key_id, "accessKeyId"));
    let user_name = nonempty(take(id.user_name, "userName"));
    if let Some(t) = t {
        batch.str(u.type_, t);
        batch.i32(u.type_id, user_type_id(t));
    }
    if let Some(v) = arn {
        batch.str(u.uid, v);
    }
    // Identity Center users: `onBehalfOf.userId` and `credentialId`.
    let on_behalf = nonempty(id.on_behalf.and_then(|o| o.get_str("userId")));
    if on_behalf.is_some() {
        consumed |= ident_key_bit("onBehalfOf");
    }
    if let Some(v) = principal.or(on_behalf) {
        batch.str(u.uid_alt, v);
    }
    let issuer_name = || {
        let v = id.issuer.and_then(|s| s.get_str("userName"));
        if v.is_some() {
            consumed |= session_bit("sessionIssuer", "userName");
        }
        v
    };
    let name = user_name.or_else(issuer_name).or_else(|| nonempty(extra.and_then(|e| e.get_str("UserName"))));
    if let Some(v) = name {
        batch.str(u.name, v);
    }
    let credential_id = nonempty(str_of(id.credential_id));
    if credential_id.is_some() {
        consumed |= ident_key_bit("credentialId");
    }
    if let Some(v) = key_id.or(credential_id) {
        batch.str(u.credential_uid, v);
    }
    if let Some(v) = account {
        batch.str(u.account_uid, v);
        batch.i32(u.account_type_id, 10);
        batch.str(u.account_type, "AWS Account");
    }
    consumed
}

/// Maps `userIdentity` to `actor`; returns the bits of the members consumed.
fn write_actor(batch: &mut ColumnBatch, c: &Cols, id: &Ident<'_, '_>, extra: Option<Val<'_, '_>>) -> u16 {
    let mut consumed = write_user(batch, &c.actor_user, id, extra);
    if let Some(store) = nonempty(id.on_behalf.and_then(|o| o.get_str("identityStoreArn"))) {
        batch.str(c.actor_idp_uid, store);
    }
    let s = &c.actor_session;
    if let Some(k) = nonempty(str_of(id.key_id)) {
        batch.str(s.credential_uid, k);
    }
    if let Some(arn) = id.issuer.and_then(|i| i.get_str("arn")) {
        batch.str(s.issuer, arn);
        consumed |= session_bit("sessionIssuer", "arn");
    }
    if let Some(attrs) = id.attributes {
        if let Some(t) = attrs.get_str("creationDate").and_then(parse_rfc3339_ms) {
            batch.i64(s.created_time, t);
            batch.i64(s.created_time_dt, t);
            consumed |= session_bit("attributes", "creationDate");
        }
        // CloudTrail writes the flag as a string; anything but its two
        // spellings stays in `unmapped`.
        let mfa = attrs.get("mfaAuthenticated").and_then(|v| {
            v.as_bool().or_else(|| match v.as_str() {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            })
        });
        if let Some(m) = mfa {
            batch.bool(s.is_mfa, m);
            consumed |= session_bit("attributes", "mfaAuthenticated");
        }
    }
    if let Some(v) = str_of(id.invoked_by) {
        batch.str(c.actor_app_name, v);
        consumed |= ident_key_bit("invokedBy");
    }
    let (idp, bit) = match str_of(id.idp) {
        Some(v) => (Some(v), ident_key_bit("identityProvider")),
        None => (
            id.web_id.and_then(|w| w.get_str("federatedProvider")),
            session_bit("webIdFederationData", "federatedProvider"),
        ),
    };
    if let Some(v) = idp {
        batch.str(c.actor_idp_name, v);
        consumed |= bit;
    }
    consumed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verb_prefixes_respect_word_boundaries() {
        assert_eq!(api_activity_id("PutObject", None), 3);
        assert_eq!(api_activity_id("DescribeInstances", None), 2);
        assert_eq!(api_activity_id("DeleteRunbook", None), 4);
        assert_eq!(api_activity_id("RunInstances", None), 1);
        assert_eq!(api_activity_id("AddressBookSync", None), 99);
        assert_eq!(api_activity_id("AddressBookSync", Some(true)), 2);
        assert_eq!(api_activity_id("Settle", None), 99);
    }

    #[test]
    fn routing() {
        assert_eq!(route("ConsoleLogin", "signin.amazonaws.com"), Class::Authentication);
        assert_eq!(route("PasswordUpdated", "signin.amazonaws.com"), Class::AccountChange);
        assert_eq!(route("AssumeRoleWithSAML", "sts.amazonaws.com"), Class::Authentication);
        assert_eq!(route("CreateUser", "iam.amazonaws.com"), Class::AccountChange);
        assert_eq!(route("CreateUser", "transfer.amazonaws.com"), Class::ApiActivity);
        assert_eq!(route("GetObject", "s3.amazonaws.com"), Class::ApiActivity);
    }
}
