//! gRPC reflection as a client without our protos meets it (grpcurl, a
//! browser tool): on each listener and each reflection version, every
//! service listed resolves, and so does every message type those services
//! use, down to the fields' types, and the error details every failure
//! carries (`google.rpc.ErrorInfo`, `RetryInfo`), with every file they
//! import.

use std::collections::{BTreeSet, HashMap, VecDeque};

use offers_tests::{TestSuite, both};
use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto};
use tonic::transport::Channel;

/// One question to reflection.
enum Ask {
    Services,
    Symbol(String),
    File(String),
}

/// Its answer: the services listed, or encoded file descriptors.
enum Answer {
    Services(Vec<String>),
    Files(Vec<Vec<u8>>),
}

/// The same client for each reflection version (their types are twins).
macro_rules! reflection_version {
    ($version:ident) => {
        mod $version {
            use tonic_reflection::pb::$version::ServerReflectionRequest;
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

            use super::{Answer, Ask};

            /// Asks on a stream of its own: an error may end a stream.
            pub async fn ask(
                channel: tonic::transport::Channel,
                credential: Option<&str>,
                ask: Ask,
            ) -> Result<Answer, tonic::Status> {
                let message_request = Some(match ask {
                    Ask::Services => MessageRequest::ListServices(String::new()),
                    Ask::Symbol(symbol) => MessageRequest::FileContainingSymbol(symbol),
                    Ask::File(name) => MessageRequest::FileByFilename(name),
                });
                let mut request = tonic::Request::new(tokio_stream::iter([ServerReflectionRequest {
                    host: String::new(),
                    message_request,
                }]));
                if let Some(credential) = credential {
                    let bearer = format!("Bearer {credential}").parse().expect("ascii");
                    request.metadata_mut().insert("authorization", bearer);
                }
                let mut answers =
                    ServerReflectionClient::new(channel).server_reflection_info(request).await?.into_inner();
                let answer = answers.message().await?.ok_or_else(|| tonic::Status::unknown("no answer"))?;
                match answer.message_response {
                    Some(MessageResponse::ListServicesResponse(list)) => {
                        Ok(Answer::Services(list.service.into_iter().map(|s| s.name).collect()))
                    }
                    Some(MessageResponse::FileDescriptorResponse(files)) => {
                        Ok(Answer::Files(files.file_descriptor_proto))
                    }
                    Some(MessageResponse::ErrorResponse(error)) => {
                        Err(tonic::Status::new(error.error_code.into(), error.error_message))
                    }
                    _ => Err(tonic::Status::unknown("an answer to another question")),
                }
            }
        }
    };
}

reflection_version!(v1);
reflection_version!(v1alpha);

#[derive(Clone, Copy, Debug)]
enum Version {
    V1,
    V1alpha,
}

/// What a client learns from one listener through one reflection version.
struct Reflected {
    version: Version,
    channel: Channel,
    credential: Option<String>,
    files: HashMap<String, FileDescriptorProto>,
}

impl Reflected {
    async fn ask(&self, ask: Ask) -> Result<Answer, tonic::Status> {
        let (channel, credential) = (self.channel.clone(), self.credential.as_deref());
        match self.version {
            Version::V1 => v1::ask(channel, credential, ask).await,
            Version::V1alpha => v1alpha::ask(channel, credential, ask).await,
        }
    }

    async fn services(&self) -> Vec<String> {
        match self.ask(Ask::Services).await {
            Ok(Answer::Services(names)) => names,
            Ok(Answer::Files(_)) => panic!("{:?}: files for a list", self.version),
            Err(status) => panic!("{:?}: listing services: {status:?}", self.version),
        }
    }

    /// Takes in the files of an answer and, by name, every file they import.
    async fn learn(&mut self, asked: Ask, what: &str) {
        let mut pending = VecDeque::from([asked]);
        while let Some(ask) = pending.pop_front() {
            let files = match self.ask(ask).await {
                Ok(Answer::Files(files)) => files,
                Ok(Answer::Services(_)) => panic!("{:?}: a list for {what}", self.version),
                Err(status) => panic!("{:?}: {what} does not resolve: {status:?}", self.version),
            };
            for encoded in files {
                let file = FileDescriptorProto::decode(encoded.as_slice()).expect("a file descriptor");
                for import in &file.dependency {
                    if !self.files.contains_key(import) {
                        pending.push_back(Ask::File(import.clone()));
                    }
                }
                self.files.insert(file.name().to_string(), file);
            }
        }
    }

    /// The symbol's file, resolved by the symbol as a client asks it.
    async fn resolve(&mut self, symbol: &str) {
        self.learn(Ask::Symbol(symbol.to_string()), symbol).await;
        assert!(self.defines(symbol), "{:?}: the file given for {symbol} does not define it", self.version);
    }

    fn defines(&self, symbol: &str) -> bool {
        self.files.values().any(|file| {
            let package = file.package();
            let named = |name: &str| format!("{package}.{name}") == symbol;
            file.service.iter().any(|s| named(s.name()))
                || file.enum_type.iter().any(|e| named(e.name()))
                || file.message_type.iter().any(|m| contains(m, &format!("{package}.{}", m.name()), symbol).is_some())
        })
    }

    fn message(&self, symbol: &str) -> Option<&DescriptorProto> {
        self.files.values().find_map(|file| {
            let package = file.package();
            file.message_type.iter().find_map(|m| contains(m, &format!("{package}.{}", m.name()), symbol))
        })
    }

    /// Resolves every listed service and every type reachable from their
    /// methods and from the error details; returns the types resolved.
    async fn resolve_everything(&mut self, services: &[String]) -> BTreeSet<String> {
        let mut types: VecDeque<String> =
            ["google.rpc.Status", "google.rpc.ErrorInfo", "google.rpc.RetryInfo"].map(String::from).into();
        for service in services {
            self.resolve(service).await;
            let methods = self.files.values().flat_map(|file| {
                let package = file.package().to_string();
                file.service
                    .iter()
                    .filter(move |s| &format!("{package}.{}", s.name()) == service)
                    .flat_map(|s| &s.method)
            });
            for method in methods.collect::<Vec<_>>() {
                types.push_back(method.input_type().trim_start_matches('.').to_string());
                types.push_back(method.output_type().trim_start_matches('.').to_string());
            }
        }
        let mut resolved = BTreeSet::new();
        while let Some(symbol) = types.pop_front() {
            if !resolved.insert(symbol.clone()) {
                continue;
            }
            self.resolve(&symbol).await;
            if let Some(message) = self.message(&symbol) {
                let used = message.field.iter().filter(|f| !f.type_name().is_empty());
                types.extend(used.map(|f| f.type_name().trim_start_matches('.').to_string()));
            }
        }
        resolved
    }
}

/// `symbol` among `message` (named `name`) and its nested messages.
fn contains<'m>(message: &'m DescriptorProto, name: &str, symbol: &str) -> Option<&'m DescriptorProto> {
    if name == symbol {
        return Some(message);
    }
    let nested_enum = message.enum_type.iter().any(|e| format!("{name}.{}", e.name()) == symbol);
    if nested_enum {
        return Some(message);
    }
    message.nested_type.iter().find_map(|nested| contains(nested, &format!("{name}.{}", nested.name()), symbol))
}

async fn reflection_resolves_everything_it_lists(suite: &TestSuite) {
    let credential = suite.settings.internal_token().expect("credential").to_string();
    let listeners = [(suite.public_channel().await, None), (suite.internal_channel().await, Some(credential))];
    for (channel, credential) in listeners {
        for version in [Version::V1, Version::V1alpha] {
            let mut reflected =
                Reflected { version, channel: channel.clone(), credential: credential.clone(), files: HashMap::new() };
            let services = reflected.services().await;
            assert!(services.iter().any(|s| s.starts_with("offers.")), "{services:?}");
            let resolved = reflected.resolve_everything(&services).await;
            for needed in [
                "google.rpc.ErrorInfo",
                "google.rpc.RetryInfo",
                "google.protobuf.Duration",
                "google.protobuf.Timestamp",
            ] {
                assert!(resolved.contains(needed), "{version:?}: {needed} not among {resolved:?}");
            }
            assert!(resolved.len() > 40, "{version:?}: only {resolved:?}");
        }
    }
}

both!(reflection_resolves_everything_it_lists);
