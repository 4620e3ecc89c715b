# Torch: user, directories, units; the hub follows the system presets on
# install and is restarted on upgrade.
systemd-sysusers /usr/lib/sysusers.d/torch.conf || :
# Agents left the torch group (it reads the hub's store); sysusers adds
# memberships but never removes one an older package made.
gpasswd -d torch-agent torch >/dev/null 2>&1 || :
systemd-tmpfiles --create /usr/lib/tmpfiles.d/torch.conf || :
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    systemctl reload dbus.service 2>/dev/null || :
    if [ "$1" -eq 1 ]; then
        systemctl preset torch.service torch-autocommit.timer || :
        # Agents come back after a reboot only through the fleet's target.
        systemctl enable torch.target || :
    fi
fi
