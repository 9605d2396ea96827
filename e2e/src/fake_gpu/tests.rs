//! The plugin against a stand-in kubelet: a Registration server on a temporary
//! unix socket. The e2e smoke tests check the same against the real kubelet.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};

use super::api::device_plugin_client::DevicePluginClient;
use super::api::registration_server::{Registration, RegistrationServer};
use super::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, Empty,
    PreStartContainerRequest, PreferredAllocationRequest,
};
use super::*;

const WAIT: Duration = Duration::from_secs(20);

struct FakeKubelet {
    registrations: mpsc::UnboundedSender<RegisterRequest>,
}

#[tonic::async_trait]
impl Registration for FakeKubelet {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let _ = self.registrations.send(request.into_inner());
        Ok(Response::new(Empty {}))
    }
}

/// A running stand-in kubelet; `stop` ends it like a killed kubelet, leaving
/// its socket file behind.
struct KubeletHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl KubeletHandle {
    fn start(path: &Path, registrations: mpsc::UnboundedSender<RegisterRequest>) -> Self {
        let listener = UnixListener::bind(path).expect("bind the kubelet socket");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            Server::builder()
                .add_service(RegistrationServer::new(FakeKubelet { registrations }))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("kubelet task")
            .expect("kubelet server");
    }
}

struct PluginHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), Error>>,
}

impl PluginHandle {
    fn start(config: Config) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(config, async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("plugin stops")
            .expect("plugin task")
            .expect("plugin result");
    }
}

fn test_config(dir: &Path, count: u32) -> Config {
    let mut config = Config::new(count, DEFAULT_RESOURCE_NAME, dir);
    config.poll_interval = Duration::from_millis(50);
    config.max_retry_delay = Duration::from_millis(200);
    config
}

async fn next_registration(
    registrations: &mut mpsc::UnboundedReceiver<RegisterRequest>,
) -> RegisterRequest {
    tokio::time::timeout(WAIT, registrations.recv())
        .await
        .expect("the plugin registers in time")
        .expect("registration channel open")
}

async fn plugin_client(
    dir: &Path,
    endpoint: &str,
) -> DevicePluginClient<tonic::transport::Channel> {
    let channel = unix_channel(&dir.join(endpoint))
        .await
        .expect("connect to the plugin");
    DevicePluginClient::new(channel)
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

#[tokio::test]
async fn registers_lists_and_allocates_devices() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(dir.path(), 3);
    let (registered, mut registrations) = mpsc::unbounded_channel();
    let kubelet = KubeletHandle::start(&config.kubelet_socket, registered);
    let plugin = PluginHandle::start(config.clone());

    let request = next_registration(&mut registrations).await;
    assert_eq!(request.version, "v1beta1");
    assert_eq!(request.resource_name, "nvidia.com/gpu");
    assert_eq!(request.endpoint, "zkfleet-fake-gpu-nvidia.com_gpu.sock");
    let registered_options = request.options.expect("options sent");
    assert!(registered_options.get_preferred_allocation_available);
    assert!(!registered_options.pre_start_required);

    let mut client = plugin_client(dir.path(), &request.endpoint).await;
    let served_options = client
        .get_device_plugin_options(Empty {})
        .await
        .expect("options")
        .into_inner();
    assert_eq!(served_options, registered_options);

    let mut devices = client
        .list_and_watch(Empty {})
        .await
        .expect("list and watch")
        .into_inner();
    let listed = devices
        .message()
        .await
        .expect("stream ok")
        .expect("a device list");
    let listed: Vec<(String, String)> = listed
        .devices
        .into_iter()
        .map(|device| (device.id, device.health))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("fake-gpu-0".to_owned(), "Healthy".to_owned()),
            ("fake-gpu-1".to_owned(), "Healthy".to_owned()),
            ("fake-gpu-2".to_owned(), "Healthy".to_owned()),
        ]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), devices.message())
            .await
            .is_err(),
        "ListAndWatch stays open after the first list"
    );

    let allocation = client
        .allocate(AllocateRequest {
            container_requests: vec![
                ContainerAllocateRequest {
                    devices_ids: ids(&["fake-gpu-1"]),
                },
                ContainerAllocateRequest {
                    devices_ids: ids(&["fake-gpu-0", "fake-gpu-2"]),
                },
            ],
        })
        .await
        .expect("allocate")
        .into_inner();
    let envs: Vec<_> = allocation
        .container_responses
        .iter()
        .map(|container| {
            (
                container.envs[NVIDIA_VISIBLE_DEVICES].as_str(),
                container.envs[ZKFLEET_FAKE_GPU_DEVICES].as_str(),
            )
        })
        .collect();
    assert_eq!(
        envs,
        vec![
            ("fake-gpu-1", "fake-gpu-1"),
            ("fake-gpu-0,fake-gpu-2", "fake-gpu-0,fake-gpu-2")
        ]
    );

    let refused = client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: ids(&["fake-gpu-9"]),
            }],
        })
        .await
        .expect_err("unknown device refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let preferred = client
        .get_preferred_allocation(PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: ids(&["fake-gpu-2", "fake-gpu-1"]),
                must_include_device_i_ds: vec![],
                allocation_size: 1,
            }],
        })
        .await
        .expect("preferred allocation")
        .into_inner();
    assert_eq!(
        preferred.container_responses[0].device_i_ds,
        ids(&["fake-gpu-1"])
    );

    client
        .pre_start_container(PreStartContainerRequest {
            devices_ids: ids(&["fake-gpu-0"]),
        })
        .await
        .expect("pre-start");

    plugin.stop().await;
    assert!(!config.socket_path().exists(), "socket removed on shutdown");
    let ended = tokio::time::timeout(WAIT, devices.message())
        .await
        .expect("the device stream ends on shutdown");
    assert!(
        !matches!(ended, Ok(Some(_))),
        "no more device lists: {ended:?}"
    );
    kubelet.stop().await;
}

#[tokio::test]
async fn waits_for_the_kubelet_and_re_registers_after_it_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(dir.path(), 2);
    // The plugin starts first and waits for the kubelet.
    let plugin = PluginHandle::start(config.clone());
    let (registered, mut registrations) = mpsc::unbounded_channel();
    let kubelet = KubeletHandle::start(&config.kubelet_socket, registered.clone());
    let first = next_registration(&mut registrations).await;
    assert_eq!(first.endpoint, config.socket_name());

    // A restarting kubelet dies, then clears the directory and listens again.
    kubelet.stop().await;
    for entry in std::fs::read_dir(dir.path()).expect("read plugin dir") {
        std::fs::remove_file(entry.expect("dir entry").path()).expect("remove socket");
    }
    let kubelet = KubeletHandle::start(&config.kubelet_socket, registered);

    let again = next_registration(&mut registrations).await;
    assert_eq!(again, first);
    let mut client = plugin_client(dir.path(), &again.endpoint).await;
    let listed = client
        .list_and_watch(Empty {})
        .await
        .expect("list and watch after restart")
        .into_inner()
        .message()
        .await
        .expect("stream ok")
        .expect("a device list");
    assert_eq!(listed.devices.len(), 2);

    plugin.stop().await;
    kubelet.stop().await;
}

#[test]
fn resource_names_are_checked() {
    assert!(validate_resource_name("nvidia.com/gpu").is_ok());
    assert!(validate_resource_name("example.dev/fake-gpu").is_ok());
    for bad in [
        "gpu",
        "nvidia.com/",
        "/gpu",
        "kubernetes.io/gpu",
        "a.b/c/d",
        "nvidia/gpu",
    ] {
        assert!(validate_resource_name(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn socket_name_is_derived_from_the_resource() {
    let config = Config::new(1, "example.dev/my gpu", "/plugins");
    assert_eq!(
        config.socket_name(),
        "zkfleet-fake-gpu-example.dev_my_gpu.sock"
    );
    assert_eq!(config.kubelet_socket, Path::new("/plugins/kubelet.sock"));
}
