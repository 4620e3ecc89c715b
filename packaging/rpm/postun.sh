# Torch: reload units; restart the hub after an upgrade. State in
# /var/lib/torch is kept (RPM has no purge; remove it by hand).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart torch.service || :
    fi
fi
