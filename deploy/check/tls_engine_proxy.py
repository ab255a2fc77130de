"""A TLS front for a local Docker Engine socket, as `dockerd --tlsverify` serves one: used by
scripts/check-deploy.sh to prove that berth's image reaches a remote engine over mutual TLS
(DOCKER_HOST=tcp://NAME:PORT, DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH) and resolves its name.

usage: tls_engine_proxy.py BIND_HOST CERT KEY CA SOCKET PORT_FILE
Listens on BIND_HOST with an ephemeral port (written to PORT_FILE once listening), requires a
client certificate signed by CA, and pipes each connection to the unix socket SOCKET.
"""

import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    bind, cert, key, ca, socket_path, port_file = sys.argv[1:7]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED

    async def handle(client_reader, client_writer):
        try:
            engine_reader, engine_writer = await asyncio.open_unix_connection(socket_path)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, engine_writer), pipe(engine_reader, client_writer))

    server = await asyncio.start_server(handle, bind, 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    with open(port_file, "w") as f:
        f.write(f"{port}\n")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
