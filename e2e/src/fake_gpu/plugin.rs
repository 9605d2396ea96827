//! The DevicePlugin gRPC service: advertises the fake devices and hands their
//! IDs to containers the way the NVIDIA plugin does.

use std::collections::HashMap;
use std::pin::Pin;

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::api::device_plugin_server::DevicePlugin;
use super::api::{
    AllocateRequest, AllocateResponse, ContainerAllocateResponse,
    ContainerPreferredAllocationRequest, ContainerPreferredAllocationResponse, Device,
    DevicePluginOptions, Empty, ListAndWatchResponse, PreStartContainerRequest,
    PreStartContainerResponse, PreferredAllocationRequest, PreferredAllocationResponse,
};

/// Health value the kubelet counts towards allocatable capacity.
pub const HEALTHY: &str = "Healthy";

/// Variable a real NVIDIA device plugin sets; containers read their GPUs from it.
pub const NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// Our own name for the same list, so tests can tell a fake device from a real one.
pub const ZKFLEET_FAKE_GPU_DEVICES: &str = "ZKFLEET_FAKE_GPU_DEVICES";

/// Stable IDs of `count` fake devices: `fake-gpu-0` .. `fake-gpu-<count-1>`.
pub fn device_ids(count: u32) -> Vec<String> {
    (0..count).map(|i| format!("fake-gpu-{i}")).collect()
}

/// One generation of the plugin service. A new one is built each time the
/// plugin (re)registers; its ListAndWatch streams end when `stop` turns true,
/// so the server behind it can shut down gracefully.
#[derive(Clone)]
pub struct FakeGpuPlugin {
    device_ids: Vec<String>,
    stop: watch::Receiver<bool>,
}

impl FakeGpuPlugin {
    pub fn new(device_ids: Vec<String>, stop: watch::Receiver<bool>) -> Self {
        Self { device_ids, stop }
    }

    fn devices(&self) -> Vec<Device> {
        self.device_ids
            .iter()
            .map(|id| Device {
                id: id.clone(),
                health: HEALTHY.to_owned(),
            })
            .collect()
    }

    /// Picks `allocation_size` devices: the required ones first, then the
    /// available ones in device order, so allocations are predictable.
    fn preferred(&self, request: &ContainerPreferredAllocationRequest) -> Vec<String> {
        let size = usize::try_from(request.allocation_size).unwrap_or(0);
        let mut chosen: Vec<String> = Vec::with_capacity(size);
        for id in &request.must_include_device_i_ds {
            if !chosen.contains(id) {
                chosen.push(id.clone());
            }
        }
        for id in &self.device_ids {
            if chosen.len() >= size {
                break;
            }
            if request.available_device_i_ds.contains(id) && !chosen.contains(id) {
                chosen.push(id.clone());
            }
        }
        chosen
    }

    fn container_allocation(&self, ids: &[String]) -> Result<ContainerAllocateResponse, Status> {
        if let Some(unknown) = ids.iter().find(|id| !self.device_ids.contains(id)) {
            return Err(Status::invalid_argument(format!(
                "unknown device {unknown:?}; this plugin has {}",
                self.device_ids.join(",")
            )));
        }
        let visible = ids.join(",");
        let envs = HashMap::from([
            (NVIDIA_VISIBLE_DEVICES.to_owned(), visible.clone()),
            (ZKFLEET_FAKE_GPU_DEVICES.to_owned(), visible),
        ]);
        Ok(ContainerAllocateResponse { envs })
    }
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for FakeGpuPlugin {
    async fn get_device_plugin_options(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(options()))
    }

    type ListAndWatchStream = DeviceStream;

    async fn list_and_watch(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        tracing::info!(
            devices = self.device_ids.len(),
            "kubelet is watching the devices"
        );
        let (tx, rx) = mpsc::channel(1);
        let first = ListAndWatchResponse {
            devices: self.devices(),
        };
        let mut stop = self.stop.clone();
        // The devices never change, but the kubelet treats the end of this
        // stream as the plugin going away, so keep it open until we stop.
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => {}
                _ = tx.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .iter()
            .map(|container| ContainerPreferredAllocationResponse {
                device_i_ds: self.preferred(container),
            })
            .collect();
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let container_responses = request
            .into_inner()
            .container_requests
            .iter()
            .map(|container| self.container_allocation(&container.devices_ids))
            .collect::<Result<Vec<_>, _>>()?;
        for (container, response) in container_responses.iter().enumerate() {
            tracing::info!(
                container,
                devices = response
                    .envs
                    .get(NVIDIA_VISIBLE_DEVICES)
                    .map(String::as_str),
                "allocated"
            );
        }
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _request: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

/// What the plugin tells the kubelet it supports, at registration and on request.
pub fn options() -> DevicePluginOptions {
    DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(count: u32) -> FakeGpuPlugin {
        FakeGpuPlugin::new(device_ids(count), watch::channel(false).1)
    }

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn device_ids_are_stable() {
        assert_eq!(
            device_ids(3),
            strings(&["fake-gpu-0", "fake-gpu-1", "fake-gpu-2"])
        );
        assert!(device_ids(0).is_empty());
    }

    #[test]
    fn preferred_allocation_takes_required_then_device_order() {
        let request = ContainerPreferredAllocationRequest {
            available_device_i_ds: strings(&["fake-gpu-3", "fake-gpu-1", "fake-gpu-2"]),
            must_include_device_i_ds: strings(&["fake-gpu-2"]),
            allocation_size: 2,
        };
        assert_eq!(
            plugin(4).preferred(&request),
            strings(&["fake-gpu-2", "fake-gpu-1"])
        );
    }

    #[test]
    fn allocation_of_unknown_device_is_refused() {
        let error = plugin(2)
            .container_allocation(&strings(&["fake-gpu-7"]))
            .unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
    }
}
