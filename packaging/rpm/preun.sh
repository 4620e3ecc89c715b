# Torch: on erase (not upgrade) stop the hub, every agent and every timer.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now torch-autocommit.timer torch.service torch-metrics.socket torch-alerts.service torch-web.socket || :
    systemctl stop torch-metrics.service torch-web.service || :
    systemctl disable torch.target || :
    systemctl stop 'torch-checkin@*.timer' torch.target 'torch-agent@*.service' || :
fi
