"""An IRC client on Python's irc library (jaraco/irc), driven line by line.

    pyclient.py HOST PORT NICK

Reads commands on stdin, one a line: `join #room`, `say TARGET TEXT`,
`action TARGET TEXT`, `nick NEW`, `names #room`, `quit [REASON]`.
Prints what the library makes of the server, one event a line:
`TYPE SOURCE-NICK TARGET ARG...` (`welcome`, `join`, `pubmsg`,
`privmsg`, `action`, `namreply`, `nick`, `part`, `quit`,
`nicknameinuse`, `error`, `disconnect`).
"""

import select
import sys

import irc.client


def main():
    host, port, nick = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    reactor = irc.client.Reactor()
    connection = reactor.server().connect(host, port, nick)
    done = []

    def show(connection, event):
        source = event.source.nick if event.source else "-"
        words = [event.type, source or "-", event.target or "-"]
        words += [str(argument) for argument in event.arguments]
        print(" ".join(words), flush=True)
        if event.type == "disconnect":
            done.append(True)

    reactor.add_global_handler("all_events", show, -10)
    while not done:
        reactor.process_once(0.05)
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        if not ready:
            continue
        line = sys.stdin.readline()
        if not line:
            break
        verb, _, rest = line.rstrip("\n").partition(" ")
        if verb == "join":
            connection.join(rest)
        elif verb == "say":
            target, _, text = rest.partition(" ")
            connection.privmsg(target, text)
        elif verb == "action":
            target, _, text = rest.partition(" ")
            connection.action(target, text)
        elif verb == "nick":
            connection.nick(rest)
        elif verb == "names":
            connection.names([rest])
        elif verb == "quit":
            connection.quit(rest)


if __name__ == "__main__":
    main()
