#!/usr/bin/env nsshell
# A small network lab: three hosts on a bridge, a router namespace, and pings.
# Works as root, or as any user (every namespace below is owned by a user
# namespace created first, in which we are root).  Nothing leaves these
# namespaces: the addresses are private and the lab ends with the shell.
#
#   nsshell examples/bridge-lab.nss

new user as lab
map root

# The switch: a namespace with a bridge.
new net as sw --no-join
net bridge sw br0 --up

# Three hosts, each with a veth into the switch, an address, links up.
new net as h1 --no-join
new net as h2 --no-join
new net as h3 --no-join
net veth h1:eth0 sw:p1 --up
net veth h2:eth0 sw:p2 --up
net veth h3:eth0 sw:p3 --up
net bridge sw br0 p1 p2 p3 --up
net addr h1 eth0 10.60.0.1/24
net addr h2 eth0 10.60.0.2/24
net addr h3 eth0 10.60.0.3/24
net up h1 lo
net up h2 lo
net up h3 lo

# A router between the lab's network and another one behind it.
new net as r --no-join
new net as far --no-join
net veth r:lan sw:p4 --up
net bridge sw br0 p4
net addr r lan 10.60.0.254/24
net veth r:wan far:eth0 --up
net addr r wan 10.61.0.254/24
net addr far eth0 10.61.0.1/24
net route h1 default via 10.60.0.254
net route far default via 10.61.0.254
join net r
run sysctl -q -w net.ipv4.ip_forward=1

net ls sw
join net h1
run ping -c1 -W2 10.60.0.2
run ping -c1 -W2 10.60.0.3
run ping -c1 -W2 10.61.0.1
